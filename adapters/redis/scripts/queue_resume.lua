-- queue_resume: resume a paused queue (QueueControl): its tasks are claimable at once.
-- KEYS[1] the partition prefix   ARGV[1] the clock mode (see _lib.lua; not read)   ARGV[2] the queue name
-- A queue with ready tasks gets a wake token, as an enqueue gives one: a blocked claimer wakes, and one that
-- leaves tasks behind passes a token on (_claim.lua).
-- Returns: 1 if the queue was paused, else 0.

local queue = part(ARGV[2])
local removed = redis.call('SREM', P .. 'paused', queue)
if removed == 1 and redis.call('ZCARD', ready_key(queue)) > 0 then
    wake(queue)
    flush()
end
return removed
