-- enqueue: store new tasks, all of one bulk submit in one call.
-- KEYS    the fixed block (see _lib.lua)
-- ARGV[1..5] the common prefix (see _lib.lua)
-- ARGV[6..] 11 values per task (records.task_args): id, status, queue, priority, type, tenant,
--           attempts, run_at, finished_at ('' = none), idem field ('' = no idempotency key), data
-- Returns: one entry per task, in order: 0 when the task was stored as given, or the record
--          (data, status, attempts, started_at, worker_id) of the task stored earlier under the
--          same (tenant, idempotency key) or the same id, which is returned in its place.

-- Check every task before writing any: a script is atomic only if it does not fail half way.
for at = 6, #ARGV, TASK_ARGS do
    status_key(task_at(at).status)
end

local out = {}
for at = 6, #ARGV, TASK_ARGS do
    local t = task_at(at)
    local key = task_key(t.id)
    local existing = nil
    if t.idem ~= '' then
        local other = redis.call('HGET', KEYS[8], t.idem)
        if other and redis.call('EXISTS', task_key(other)) == 1 then existing = task_key(other) end
    end
    -- The same id twice (a client retrying a bulk submit after a timeout) is not stored again.
    if not existing and redis.call('EXISTS', key) == 1 then existing = key end

    if existing then
        out[#out + 1] = record(existing)
    else
        local seq = redis.call('INCR', KEYS[2])
        write(key, t)
        redis.call('HSET', key, 'seq', seq)
        if t.idem ~= '' then
            redis.call('HSET', KEYS[8], t.idem, t.id)
            redis.call('HSET', key, 'idem', t.idem)
        end
        redis.call('ZADD', KEYS[4], seq, t.id)
        index(t.id, t.status, t.queue, t.priority, seq, t.run_at, t.finished_at)
        out[#out + 1] = 0
    end
end
return out
