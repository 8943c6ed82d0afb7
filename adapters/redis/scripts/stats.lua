-- stats: counts by status, and ready tasks by queue and priority, in one consistent snapshot.
-- KEYS    the fixed block (see _lib.lua)
-- ARGV[1..5] the common prefix (see _lib.lua)
-- ARGV[6..] the statuses to count
-- Returns: {counts, queues}: counts has one number per ARGV status, in order; queues has one
--          {queue, low, normal, high, critical} per queue with at least one ready task.
-- Cost: O(1) per status (ZCARD) and O(log n) per queue and level (ZCOUNT of a score band).

local counts = {}
for i = 6, #ARGV do counts[#counts + 1] = redis.call('ZCARD', status_key(ARGV[i])) end

local queues = {}
for _, queue in ipairs(redis.call('SMEMBERS', KEYS[9])) do
    local row, total = {queue}, 0
    for priority = 0, 3 do
        local low = (3 - priority) * PRIORITY_BAND
        local count = redis.call('ZCOUNT', ready_key(queue), fmt(low), '(' .. fmt(low + PRIORITY_BAND))
        row[#row + 1] = count
        total = total + count
    end
    if total > 0 then queues[#queues + 1] = row end
end
return {counts, queues}
