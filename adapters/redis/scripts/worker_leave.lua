-- worker_leave: forget a worker now (the WorkerRegistry); a missing one is not an error.
-- KEYS[1] the partition prefix   ARGV[1] the clock mode (see _lib.lua; not read)   ARGV[2] the worker id
-- Returns: nothing.

redis.call('ZREM', P .. 'workers:alive', ARGV[2])
redis.call('HDEL', P .. 'workers', ARGV[2])
return nil
