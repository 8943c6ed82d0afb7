-- stats: counts by status, and the depth and age of every queue and priority, in one consistent snapshot.
-- KEYS[1] the partition prefix   ARGV[1] the clock mode (see _lib.lua)
-- ARGV[2] how many tasks at the head of a ready level the oldest age looks at   ARGV[3..] the statuses to count
-- Returns: {counts, queues, running, depth, now, paused}: counts has one number per ARGV status, in order; queues has
--          one {queue, low, normal, high, critical, eligible low, .. critical} per queue with at least one ready
--          task (eligible: the earliest max(created_at, run_at) among the head of the level, '' when empty);
--          running and depth are flat {'<state>|<priority>|<queue>', count, ...} lists (running, then scheduled
--          and dead); now is the clock's time as text; paused the paused queues' names.
-- The counts are the sizes of the index sets (see _lib.lua): queued = every ready set, scheduled =
-- delayed, running = leases, succeeded = finished minus the cancelled, dead and cancelled their own.
-- Cost: O(1) per status; O(log n + ARGV[2]) per queue and level (ZCOUNT of a score band, and the HMGET of the
-- level's first tasks: the oldest of them is the oldest of the level unless a task that waited longer sits
-- behind ARGV[2] younger ones, which delays and retries can do, and fair turns when more than ARGV[2] tenants
-- wait in one level: each tenant's oldest is at its next turn); one HMGET per running task (as many as
-- the workers' slots); one HGETALL of the scheduled and dead depth (a field per queue and priority).

local head = tonumber(ARGV[2])
local queues, queued = {}, 0
for _, queue in ipairs(redis.call('SMEMBERS', P .. 'queues')) do
    local row, eligible, total = {queue}, {}, 0
    for priority = 0, 3 do
        local low = (3 - priority) * BAND
        local high = '(' .. fmt(low + BAND)
        local n = redis.call('ZCOUNT', ready_key(queue), low, high)
        local since = ''
        if n > 0 then
            for _, id in ipairs(redis.call('ZRANGE', ready_key(queue), low, high, 'BYSCORE', 'LIMIT', 0, head)) do
                local created, run_at = unpack(redis.call('HMGET', task_key(id), 'created_at', 'run_at'))
                local at = math.max(tonumber(created) or 0, tonumber(run_at) or 0)
                if since == '' or at < since then since = at end
            end
            if since ~= '' then since = fmt(since) end
        end
        row[#row + 1] = n
        eligible[#eligible + 1] = since
        total = total + n
    end
    for _, since in ipairs(eligible) do row[#row + 1] = since end
    if total > 0 then queues[#queues + 1] = row end
    queued = queued + total
end
local running, counted = {}, {}
for _, id in ipairs(redis.call('ZRANGE', LEASES, 0, -1)) do
    local queue, priority = unpack(redis.call('HMGET', task_key(id), 'queue', 'priority'))
    if queue then
        local field = 'running|' .. priority .. '|' .. queue
        if not counted[field] then counted[field] = 0; running[#running + 1] = field end
        counted[field] = counted[field] + 1
    end
end
local flat = {}
for _, field in ipairs(running) do flat[#flat + 1] = field; flat[#flat + 1] = counted[field] end
local cancelled = redis.call('ZCARD', status_key('cancelled'))
local by_status = {queued = queued, scheduled = redis.call('ZCARD', DELAYED),
                   running = redis.call('ZCARD', LEASES),
                   succeeded = redis.call('ZCARD', FINISHED) - cancelled, failed = 0,
                   dead = redis.call('ZCARD', status_key('dead')), cancelled = cancelled}
local counts = {}
for i = 3, #ARGV do counts[#counts + 1] = by_status[check_status(ARGV[i])] end
return {counts, queues, flat, redis.call('HGETALL', P .. 'depth'), fmt(now()), redis.call('SMEMBERS', P .. 'paused')}
