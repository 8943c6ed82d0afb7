-- enqueue: store the new tasks of one or more submit requests in one call. A bulk submit is one
-- request; concurrent submits of one process are coalesced into one call (adapters/redis/submits.py)
-- and each is answered on its own. A request is all or nothing: its tasks are stored if its tenants
-- stay within its cap and no idempotency key names a different request; otherwise none of them is,
-- and the requests after it go on as if it had not been made.
-- KEYS[1] the partition prefix   ARGV[1] the clock mode (see _lib.lua)
-- ARGV[2] the number of requests; then per request: its cap on each tenant's waiting (queued +
--         scheduled) tasks ('0' = none), its number of tasks, then per task (records.enqueue_args):
--         '<id> <queue> <priority> <status> <attempts> <run_at> <delay> <type> <keyed> <tenant>', the
--         data (JSON), and when keyed = '1' the idem field (keys.idempotency_field) and the request's
--         fingerprint (hexq.core.idempotency.fingerprint)
-- Returns: {now, answers}: the server time the new tasks were stored at (created then; due at
--          max(run_at, now + delay), scheduled if that is later, else queued: hexq.core.clock.stamped
--          with new=True, which the client applies to rebuild them), and one answer per request:
--          {'stored', entries}, one entry per task: 0 when the task was stored as given, or the record
--          (records.RECORD_FIELDS) of the task stored earlier under the same (tenant, idempotency key)
--          or the same id (before, or earlier in this call), returned in its place;
--          {'full', tenant} when that tenant would go over the cap; or {'mismatch', idem field} when
--          a key names a different request (stored before, or earlier in this call).

local HEAD = '^([%w_.:%-]+) ([%w_.:%-]+) ([0-3]) (%l+) (%d+) (%S+) (%S+) ([%w_.:%-]+) ([01]) (.*)$'

-- Parse every task before anything is decided: a malformed one fails the call with nothing written.
local requests, task_keys, keyed, capped = {}, {}, {}, false
local at = 3
for r = 1, tonumber(ARGV[2]) do
    local request = {cap = tonumber(ARGV[at]), tasks = {}}
    capped = capped or request.cap > 0
    local n = tonumber(ARGV[at + 1])
    at = at + 2
    for i = 1, n do
        local id, queue, priority, status, attempts, run_at, delay, kind, has_key, tenant = string.match(ARGV[at], HEAD)
        if not id or #id > 64 or #queue > 64 or #kind > 64 then fail('invalid key part or value in ' .. string.format('%q', ARGV[at])) end
        if not is_waiting(status) then fail('enqueue takes queued or scheduled tasks, not ' .. status) end
        local t = {id = id, queue = queue, priority = priority, attempts = attempts, run_at = run_at, delay = delay,
                   type = kind, tenant = tenant, data = ARGV[at + 1]}
        at = at + 2
        if has_key == '1' then
            t.idem, t.fp = ARGV[at], ARGV[at + 1]
            at = at + 2
            keyed[#keyed + 1] = t.idem
        end
        task_keys[#task_keys + 1] = task_key(id)
        request.tasks[i] = t
    end
    requests[r] = request
end

-- What was stored before this call: no task of the call, in the common case, which one EXISTS tells;
-- and the tasks the idempotency keys name, in one HMGET.
local before = 0
for i = 1, #task_keys, CHUNK do
    before = before + redis.call('EXISTS', unpack(task_keys, i, last_of(task_keys, i)))
end
local stored_keys = {}
for i = 1, #keyed, CHUNK do
    local ids = redis.call('HMGET', P .. 'idem', unpack(keyed, i, last_of(keyed, i)))
    for j = 1, #ids do
        if ids[j] then stored_keys[keyed[i + j - 1]] = ids[j] end
    end
end

local function stored(id) return redis.call('EXISTS', task_key(id)) == 1 end

-- What the requests accepted so far in this call added.
local new_ids, new_keys, fingerprints, added, counted = {}, {}, {}, {}, {}

local function waiting_now(tenant)
    if counted[tenant] == nil then counted[tenant] = tonumber(redis.call('HGET', P .. 'waiting', tenant) or '0') end
    return counted[tenant] + (added[tenant] or 0)
end

-- The id of the task that answers t in its place, if any: same key, else same id; stored before, or
-- new earlier in this call (`mine`: earlier in t's own request).
local function answer(t, mine)
    if t.idem then
        local id = mine.keys[t.idem] or new_keys[t.idem]
        if id then return id end
        id = stored_keys[t.idem]
        if id and stored(id) then return id end
    end
    if mine.ids[t.id] or new_ids[t.id] then return t.id end
    if before > 0 and stored(t.id) then return t.id end
    return nil
end

-- Decide one request: nil when it is accepted (every task marked new or answered), else its refusal.
local function decide(request)
    local mine, adding = {ids = {}, keys = {}, fingerprints = {}}, {}
    for _, t in ipairs(request.tasks) do
        local other = answer(t, mine)
        if t.idem then
            local fp = mine.fingerprints[t.idem] or fingerprints[t.idem]
            if fp == nil then
                -- The stored task's fingerprint. One stored before fingerprints were kept has none: the
                -- client compares those.
                if other and not mine.ids[other] and not new_ids[other] then
                    fp = redis.call('HGET', task_key(other), 'fp')
                end
                fp = fp or t.fp
                mine.fingerprints[t.idem] = fp
            end
            if fp ~= t.fp then return {'mismatch', t.idem} end
        end
        t.answer = other
        if not other then
            mine.ids[t.id] = true
            if t.idem then mine.keys[t.idem] = t.id end
            adding[t.tenant] = (adding[t.tenant] or 0) + 1
        end
    end
    if request.cap > 0 then
        for tenant, n in pairs(adding) do
            if waiting_now(tenant) + n > request.cap then return {'full', tenant} end
        end
    end
    for id in pairs(mine.ids) do new_ids[id] = true end
    for idem, id in pairs(mine.keys) do new_keys[idem] = id end
    for idem, fp in pairs(mine.fingerprints) do fingerprints[idem] = fp end
    for tenant, n in pairs(adding) do added[tenant] = (added[tenant] or 0) + n end
    return nil
end

local new = 0
if before == 0 and #keyed == 0 and not capped then
    new = #task_keys  -- nothing to decide: every task is new and every request within bounds
else
    for _, request in ipairs(requests) do
        request.refused = decide(request)
        if not request.refused then
            for _, t in ipairs(request.tasks) do
                if not t.answer then new = new + 1 end
            end
        end
    end
end

local now_at = now()
local seq = 0
if new > 0 then seq = redis.call('INCRBY', P .. 'seq', new) - new end
local idem_fields, answers = {}, {}
for r, request in ipairs(requests) do
    if request.refused then
        answers[r] = request.refused
    else
        local entries = {}
        for i, t in ipairs(request.tasks) do
            if t.answer then
                entries[i] = record(task_key(t.answer))  -- written above if it is new in this call
            else
                seq = seq + 1
                t.seq = seq
                -- Due or not by the server's clock, whatever the client thought.
                local due = math.max(tonumber(t.run_at), now_at + tonumber(t.delay))
                local status = (due > now_at) and 'scheduled' or 'queued'
                if t.idem then
                    redis.call('HSET', task_key(t.id), 'data', t.data, 'status', status, 'attempts', t.attempts,
                               'queue', t.queue, 'priority', t.priority, 'type', t.type, 'tenant', t.tenant,
                               'seq', seq, 'created_at', now_at, 'run_at', due, 'idem', t.idem, 'fp', t.fp)
                    idem_fields[#idem_fields + 1] = t.idem
                    idem_fields[#idem_fields + 1] = t.id
                else
                    redis.call('HSET', task_key(t.id), 'data', t.data, 'status', status, 'attempts', t.attempts,
                               'queue', t.queue, 'priority', t.priority, 'type', t.type, 'tenant', t.tenant,
                               'seq', seq, 'created_at', now_at, 'run_at', due)
                end
                zadd(ALL, seq, t.id)
                enter(t.id, status, t, due)
                entries[i] = 0
            end
        end
        answers[r] = {'stored', entries}
    end
end
for i = 1, #idem_fields, CHUNK do redis.call('HSET', P .. 'idem', unpack(idem_fields, i, last_of(idem_fields, i))) end
flush()
return {fmt(now_at), answers}
