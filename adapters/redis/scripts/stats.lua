-- stats: counts by status, and ready tasks by queue and priority, in one consistent snapshot.
-- KEYS[1] the partition prefix   ARGV[1] the clock mode (see _lib.lua; not read)
-- ARGV[2..] the statuses to count
-- Returns: {counts, queues}: counts has one number per ARGV status, in order; queues has one
--          {queue, low, normal, high, critical} per queue with at least one ready task.
-- The counts are the sizes of the index sets (see _lib.lua): queued = every ready set, scheduled =
-- delayed, running = leases, succeeded = finished minus the cancelled, dead and cancelled their own.
-- Cost: O(1) per status and O(log n) per queue and level (ZCOUNT of a score band).

local queues, queued = {}, 0
for _, queue in ipairs(redis.call('SMEMBERS', P .. 'queues')) do
    local row, total = {queue}, 0
    for priority = 0, 3 do
        local low = (3 - priority) * BAND
        local n = redis.call('ZCOUNT', ready_key(queue), low, '(' .. fmt(low + BAND))
        row[#row + 1] = n
        total = total + n
    end
    if total > 0 then queues[#queues + 1] = row end
    queued = queued + total
end
local cancelled = redis.call('ZCARD', status_key('cancelled'))
local by_status = {queued = queued, scheduled = redis.call('ZCARD', DELAYED),
                   running = redis.call('ZCARD', LEASES),
                   succeeded = redis.call('ZCARD', FINISHED) - cancelled, failed = 0,
                   dead = redis.call('ZCARD', status_key('dead')), cancelled = cancelled}
local counts = {}
for i = 2, #ARGV do counts[#counts + 1] = by_status[check_status(ARGV[i])] end
return {counts, queues}
