-- claim: promote due tasks, then lease up to n ready tasks across a set of queues.
-- KEYS    the fixed block (see _lib.lua)
-- ARGV[1..5] the common prefix (see _lib.lua)
-- ARGV[6] n   ARGV[7] lease seconds   ARGV[8] worker id   ARGV[9] promote limit
-- ARGV[10..] queue names
-- Returns: {now, next_due_in, leases} where next_due_in is the seconds until the earliest
--          scheduled task is due ('' when none is) and each lease is
--          a record (records.RECORD_FIELDS) followed by the token and the expiry.
-- Order: strict priority across all the given queues, FIFO (seq) within a priority level; each
-- claimed task becomes running with attempts + 1, started_at = now, the worker id, a fresh
-- fencing token and a lease until now + lease seconds.
-- Wake lists: an empty queue's list is cleared (a later enqueue pushes a new token, so nothing is
-- missed); a queue left with ready tasks gets one token, so another blocked claimer wakes for them.

local at = now()
promote(at, tonumber(ARGV[9]))
local n = tonumber(ARGV[6])
local expires = fmt(at + tonumber(ARGV[7]))
local worker = ARGV[8]
local started = fmt(at)

local queues, seen = {}, {}
for i = 10, #ARGV do
    local queue = part(ARGV[i])
    if not seen[queue] then
        seen[queue] = true
        queues[#queues + 1] = queue
    end
end

local function head(queue)
    local first = redis.call('ZRANGE', ready_key(queue), 0, 0, 'WITHSCORES')
    if first[1] then return {tonumber(first[2]), first[1]} end
    return false
end

local heads = {}
for i, queue in ipairs(queues) do heads[i] = head(queue) end

local leases = {}
while #leases < n do
    local best = nil
    for i = 1, #queues do
        if heads[i] and (best == nil or heads[i][1] < heads[best][1]) then best = i end
    end
    if best == nil then break end
    local id = heads[best][2]
    redis.call('ZREM', ready_key(queues[best]), id)
    heads[best] = head(queues[best])

    local key = task_key(id)
    local status, seq, tenant = unpack(redis.call('HMGET', key, 'status', 'seq', 'tenant'))
    if status == 'queued' then  -- always, unless an index was damaged: then the entry is dropped
        redis.call('HINCRBY', key, 'attempts', 1)
        redis.call('ZREM', status_key('queued'), id)
        count_waiting(tenant, 'queued', -1)
        redis.call('ZADD', status_key('running'), seq, id)
        leases[#leases + 1] = lease(id, key, expires, 'status', 'running', 'started_at', started,
                                    'worker_id', worker)
    end
end

for i, queue in ipairs(queues) do
    if not heads[i] then
        redis.call('DEL', wake_key(queue))
        redis.call('SREM', KEYS[9], queue)
    elseif #leases > 0 then
        wake(queue)
    end
end

local next_due_in = ''
local due = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
if due[1] then next_due_in = fmt(tonumber(due[2]) - at) end
return {started, next_due_in, leases}
