-- backlog: how many tasks are queued, across every queue that is not paused.
-- KEYS[1] the partition prefix   ARGV[1] the clock mode (see _lib.lua; not read)
-- Returns: the count (an integer): the sizes of the ready sets.

local n = 0
for _, queue in ipairs(redis.call('SMEMBERS', P .. 'queues')) do
    if not is_paused(queue) then n = n + redis.call('ZCARD', ready_key(queue)) end
end
return n
