-- worker_beat: register a worker or refresh it (the WorkerRegistry), on the server's clock.
-- KEYS[1] the partition prefix   ARGV[1] the clock mode (see _lib.lua)
-- ARGV[2] the worker id (user data: only ever a hash field and a set member)   ARGV[3] ttl seconds
-- ARGV[4] running tasks   ARGV[5] JSON of {host, pid, queues} (stored as it is)
-- Returns: nothing. started_at is kept while the worker is alive (its next beat was due after now), else it is
-- now. Up to PRUNE workers whose beat is overdue are forgotten, so the hash holds about the live ones.

local PRUNE = 10
local at = now()
local id, alive = ARGV[2], P .. 'workers:alive'
local started = at
local due = redis.call('ZSCORE', alive, id)
if due and tonumber(due) > micros(at) then
    local previous = redis.call('HGET', P .. 'workers', id)
    if previous then started = tonumber(string.match(previous, '^([^|]*)|')) or at end
end
redis.call('HSET', P .. 'workers', id, fmt(started) .. '|' .. fmt(at) .. '|' .. ARGV[4] .. '|' .. ARGV[5])
redis.call('ZADD', alive, micros(at + tonumber(ARGV[3])), id)
local gone = redis.call('ZRANGE', alive, '-inf', micros(at), 'BYSCORE', 'LIMIT', 0, PRUNE)
if #gone > 0 then
    redis.call('ZREM', alive, unpack(gone))
    redis.call('HDEL', P .. 'workers', unpack(gone))
end
return nil
