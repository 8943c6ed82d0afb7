-- backlog: how many tasks are queued, across every queue.
-- KEYS[1] the partition prefix   ARGV[1] the clock mode (see _lib.lua; not read)
-- Returns: the count (an integer): the sizes of the ready sets.

local n = 0
for _, queue in ipairs(redis.call('SMEMBERS', P .. 'queues')) do n = n + redis.call('ZCARD', ready_key(queue)) end
return n
