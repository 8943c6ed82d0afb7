-- enqueue: store new tasks, all of one bulk submit in one call, within a per-tenant cap.
-- KEYS    the fixed block (see _lib.lua)
-- ARGV[1..5] the common prefix (see _lib.lua)
-- ARGV[6] the cap on each tenant's waiting (queued + scheduled) tasks; '0' = no cap
-- ARGV[7..] 12 values per task: the 11 of records.task_args (id, status, queue, priority, type,
--           tenant, attempts, run_at, delay, idem field ('' = no idempotency key), data), then the
--           request's fingerprint (hexq.core.idempotency.fingerprint)
-- Returns: {'stored', now, entries}: the server time the new tasks were stored at (created then; due
--          at max(run_at, now + delay), scheduled if that is later, else queued: hexq.core.clock.stamped
--          with new=True, which the client applies to rebuild them), and one entry per task, in
--          order: 0 when the task was stored as given, or the record (records.RECORD_FIELDS) of
--          the task stored earlier under the same (tenant, idempotency key) or the same id,
--          returned in its place;
--          {'full', tenant} when that tenant would go over the cap; or {'mismatch', idem field} when
--          a key names a different request (stored before, or earlier in this call). Nothing is
--          stored then.

local cap = tonumber(ARGV[6])
local FIRST = 7
local STRIDE = TASK_ARGS + 1

-- The task stored earlier that answers this one (same tenant and idempotency key, or same id).
local function earlier(t)
    if t.idem ~= '' then
        local other = redis.call('HGET', KEYS[8], t.idem)
        if other and redis.call('EXISTS', task_key(other)) == 1 then return task_key(other) end
    end
    if redis.call('EXISTS', task_key(t.id)) == 1 then return task_key(t.id) end
    return nil
end

-- Check every task (and the cap) before writing any: a script is atomic only if it does not fail
-- or return half way.
local adding, seen, fingerprints = {}, {}, {}
for at = FIRST, #ARGV, STRIDE do
    local t = task_at(at)
    local fp = ARGV[at + TASK_ARGS]
    status_key(t.status)
    local repeated = seen['i' .. t.id] or (t.idem ~= '' and seen['k' .. t.idem])
    local existing = earlier(t)
    if t.idem ~= '' then
        if fingerprints[t.idem] == nil then
            -- A task stored before fingerprints were kept has none: the client compares those.
            fingerprints[t.idem] = (existing and redis.call('HGET', existing, 'fp')) or fp
        end
        if fingerprints[t.idem] ~= fp then return {'mismatch', t.idem} end
    end
    if not repeated and not existing and (t.status == 'queued' or t.status == 'scheduled') then
        adding[t.tenant] = (adding[t.tenant] or 0) + 1
    end
    seen['i' .. t.id] = true
    if t.idem ~= '' then seen['k' .. t.idem] = true end
end
if cap > 0 then
    for tenant, n in pairs(adding) do
        if tonumber(redis.call('HGET', KEYS[10], tenant) or '0') + n > cap then return {'full', tenant} end
    end
end

local stored_at = now()
local out = {}
for at = FIRST, #ARGV, STRIDE do
    local t = task_at(at)
    local key = task_key(t.id)
    local existing = earlier(t)
    if existing then
        out[#out + 1] = record(existing)
    else
        local seq = redis.call('INCR', KEYS[2])
        if WAITING[t.status] then  -- due or not by the server's clock, whatever the client thought
            if due_at(t, stored_at) > stored_at then t.status = 'scheduled' else t.status = 'queued' end
        end
        write(key, t, stored_at)
        redis.call('HSET', key, 'seq', seq, 'fp', ARGV[at + TASK_ARGS], 'created_at', fmt(stored_at))
        if t.idem ~= '' then
            redis.call('HSET', KEYS[8], t.idem, t.id)
            redis.call('HSET', key, 'idem', t.idem)
        end
        redis.call('ZADD', KEYS[4], seq, t.id)
        index(t.id, t.status, t.queue, t.priority, seq, t.run_at, t.finished_at)
        count_waiting(t.tenant, t.status, 1)
        out[#out + 1] = 0
    end
end
return {'stored', fmt(stored_at), out}
