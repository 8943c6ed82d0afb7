-- _decide: which of an enqueue's tasks are new and which requests are refused (enqueue.lua, when a
-- call has idempotency keys, a cap, or a task id stored before).
-- ARGV: none read here; decide_all gets what enqueue.lua parsed.
-- Returns (decide_all): how many tasks are new. Marks each task t.answer = the id of the task that
-- answers it in its place (same tenant and key, else same id; stored before, or new earlier in this
-- call), and each refused request request.refused = {'full', tenant} or {'mismatch', idem field}.
-- Requests are decided in order, each as if the ones accepted before it were stored already.

local function stored(id) return redis.call('EXISTS', task_key(id)) == 1 end

-- `call`: what the call knows (stored_keys, before) and what the requests accepted so far added.
local function waiting_now(call, tenant)
    if call.counted[tenant] == nil then
        call.counted[tenant] = tonumber(redis.call('HGET', P .. 'waiting', tenant) or '0')
    end
    return call.counted[tenant] + (call.added[tenant] or 0)
end

-- `mine`: what t's own request added before t.
local function answer(call, t, mine)
    if t.idem then
        local id = mine.keys[t.idem] or call.new_keys[t.idem]
        if id then return id end
        id = call.stored_keys[t.idem]
        if id and stored(id) then return id end
    end
    if mine.ids[t.id] or call.new_ids[t.id] then return t.id end
    if call.before > 0 and stored(t.id) then return t.id end
    return nil
end

-- nil when the request is accepted, else its refusal.
local function decide(call, request)
    local mine, adding = {ids = {}, keys = {}, fingerprints = {}}, {}
    for _, t in ipairs(request.tasks) do
        local other = answer(call, t, mine)
        if t.idem then
            local fp = mine.fingerprints[t.idem] or call.fingerprints[t.idem]
            if fp == nil then
                -- The stored task's fingerprint. One stored before fingerprints were kept has none: the
                -- client compares those.
                if other and not mine.ids[other] and not call.new_ids[other] then
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
            if waiting_now(call, tenant) + n > request.cap then return {'full', tenant} end
        end
    end
    for id in pairs(mine.ids) do call.new_ids[id] = true end
    for idem, id in pairs(mine.keys) do call.new_keys[idem] = id end
    for idem, fp in pairs(mine.fingerprints) do call.fingerprints[idem] = fp end
    for tenant, n in pairs(adding) do call.added[tenant] = (call.added[tenant] or 0) + n end
    return nil
end

-- `keyed`: the idem fields of the call's tasks; `before`: how many of its task keys exist already.
local function decide_all(requests, keyed, before)
    local call = {before = before, stored_keys = {}, new_ids = {}, new_keys = {}, fingerprints = {}, added = {},
                  counted = {}}
    for i = 1, #keyed, CHUNK do  -- the tasks the keys name, in one HMGET
        local ids = redis.call('HMGET', P .. 'idem', unpack(keyed, i, last_of(keyed, i)))
        for j = 1, #ids do
            if ids[j] then call.stored_keys[keyed[i + j - 1]] = ids[j] end
        end
    end
    local new = 0
    for _, request in ipairs(requests) do
        request.refused = decide(call, request)
        if not request.refused then
            for _, t in ipairs(request.tasks) do
                if not t.answer then new = new + 1 end
            end
        end
    end
    return new
end
