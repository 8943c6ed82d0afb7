-- queue_pause: pause a queue (QueueControl): claims leave its tasks alone until queue_resume.
-- KEYS[1] the partition prefix   ARGV[1] the clock mode (see _lib.lua; not read)   ARGV[2] the queue name
-- Its wake tokens are dropped (a claimer they woke could take nothing) and none are pushed while it is paused
-- (flush); its ready tasks stay where they are.
-- Returns: 1 if the queue was not paused before, else 0.

local queue = part(ARGV[2])
local added = redis.call('SADD', P .. 'paused', queue)
redis.call('DEL', P .. 'wake:' .. queue)
return added
