-- _claim: lease up to n ready tasks across a set of queues (claim.lua, settle_and_claim.lua).
-- ARGV: none read here; the callers pass claim() what they parsed (claim.lua lists the values).
-- Order: strict priority across all the given queues, then turns within a priority level (fair queues:
-- tenants take turns, FIFO within a tenant; the ready score holds the turn, _lib.lua next_turn). The claim
-- moves each level's clock to the highest turn it took (move_clocks). Each
-- claimed task becomes running with attempts + 1, started_at = now, the worker id, a fresh fencing
-- token and a lease until now + lease seconds. Due scheduled tasks are promoted first (up to
-- `promote_limit`).
-- Wake lists: an empty queue's list is cleared and it leaves `queues` (a later enqueue pushes a new
-- token, so nothing is missed); a queue that may have ready tasks left keeps a token (one is pushed
-- if its list is empty), so another blocked claimer wakes for them.
-- Paused queues (is_paused) are left out of the set: their tasks stay ready, their wake lists untouched.
-- Returns {leases, next_due_in}: per lease {data, attempts, created_at, run_at, token} (the claim's
-- status, started_at, worker id and expiry are the same for all, and the caller knows them);
-- next_due_in is the seconds until the earliest scheduled task is due, '' when none is, and is only
-- looked up when nothing was claimed. Flushes.

-- The queue names args[first..] (a script's ARGV) as a list, each once (a worker may name one twice).
local function queue_names(args, first)
    local queues, seen = {}, {}
    for i = first, #args do
        local queue = part(args[i])
        if not seen[queue] then
            seen[queue] = true
            queues[#queues + 1] = queue
        end
    end
    return queues
end

local function claim(now_at, n, lease_seconds, worker, promote_limit, requested)
    local queues = {}
    for _, queue in ipairs(requested) do
        if not is_paused(queue) then queues[#queues + 1] = queue end
    end
    local earliest = redis.call('ZRANGE', DELAYED, 0, 0, 'WITHSCORES')
    if earliest[1] and score_micros(earliest[2]) <= micros(now_at) then
        promote(now_at, promote_limit)
        earliest = nil
    end

    -- The n best across the set: the first n of each queue, merged by score (`order`: the queue each
    -- pick comes from). Each queue gives a prefix of itself, which ZPOPMIN takes (cheaper than
    -- removing members one by one); one queue needs no look first.
    local picked, taken, looked = {}, {}, {}
    if #queues == 0 then
        -- every queue asked for is paused: nothing to take
    elseif #queues == 1 then
        local range = redis.call('ZPOPMIN', ready_key(queues[1]), n)
        for j = 1, #range, 2 do picked[#picked + 1] = range[j] end
        taken[1], looked[1] = #picked, #picked
        if #picked > 0 then move_clocks(queues[1], range, #picked) end
    else
        local heads, pos, order = {}, {}, {}
        for i, queue in ipairs(queues) do
            local range = redis.call('ZRANGE', ready_key(queue), 0, n - 1, 'WITHSCORES')
            for j = 2, #range, 2 do range[j] = tonumber(range[j]) end
            heads[i], pos[i], taken[i], looked[i] = range, 1, 0, #range / 2
        end
        for k = 1, n do
            local best = nil
            for i = 1, #queues do
                local score = heads[i][pos[i] + 1]
                if score and (best == nil or score < heads[best][pos[best] + 1]) then best = i end
            end
            if best == nil then break end
            pos[best] = pos[best] + 2
            taken[best] = taken[best] + 1
            order[k] = best
        end
        for i, queue in ipairs(queues) do  -- the prefixes chosen: the same as the look saw, in one script
            if taken[i] > 0 then
                redis.call('ZPOPMIN', ready_key(queue), taken[i])
                move_clocks(queue, heads[i], taken[i])
            end
            pos[i] = -1
        end
        for k, i in ipairs(order) do
            pos[i] = pos[i] + 2
            picked[k] = heads[i][pos[i]]
        end
    end

    local ids, keys, records = {}, {}, {}
    for _, id in ipairs(picked) do
        local key = task_key(id)
        local r = redis.call('HMGET', key, 'status', 'attempts', 'tenant', 'data', 'created_at', 'run_at', 'cancel')
        if r[1] == 'queued' then  -- always, unless an index was damaged: then the entry is dropped
            ids[#ids + 1], keys[#keys + 1], records[#records + 1] = id, key, r
        end
    end
    local leases = {}
    if #ids > 0 then
        local lease_score = micros(now_at + lease_seconds)
        local first_token = redis.call('INCRBY', P .. 'token', #ids) - #ids
        for i, r in ipairs(records) do
            local attempts = tonumber(r[2]) + 1
            local token = first_token + i
            if r[7] and r[7] ~= '' then  -- a cancel mark left by an earlier lease
                redis.call('HSET', keys[i], 'status', 'running', 'attempts', attempts, 'token', token,
                           'started_at', now_at, 'worker_id', worker, 'cancel', '')
            else
                redis.call('HSET', keys[i], 'status', 'running', 'attempts', attempts, 'token', token,
                           'started_at', now_at, 'worker_id', worker)
            end
            zadd(LEASES, lease_score, ids[i])
            count_waiting(r[3], 'queued', -1)
            leases[i] = {r[4], attempts, r[5] or '', r[6] or '', token}
        end
    end

    for i, queue in ipairs(queues) do
        if taken[i] == looked[i] and taken[i] < n then  -- took all it had: the queue is empty now
            redis.call('DEL', P .. 'wake:' .. queue)
            redis.call('SREM', P .. 'queues', queue)
        elseif #picked > 0 and redis.call('LLEN', P .. 'wake:' .. queue) == 0 then
            redis.call('LPUSH', P .. 'wake:' .. queue, '1')  -- the queue is still in `queues`
        end
    end
    flush()

    local next_due_in = ''
    if #leases == 0 then
        if earliest == nil then earliest = redis.call('ZRANGE', DELAYED, 0, 0, 'WITHSCORES') end
        if earliest[1] then next_due_in = fmt((score_micros(earliest[2]) - micros(now_at)) / 1000000) end
    end
    return {leases, next_due_in}
end
