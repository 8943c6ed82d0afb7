-- enqueue: store the new tasks of one or more submit requests in one call. A bulk submit is one
-- request; concurrent submits of one process are coalesced into one call (adapters/redis/submits.py)
-- and each is answered on its own. A request is all or nothing: its tasks are stored if its tenants
-- stay within its cap and no idempotency key names a different request; otherwise none of them is,
-- and the requests after it go on as if it had not been made.
-- KEYS[1] the partition prefix   ARGV[1] the clock mode (see _lib.lua)
-- ARGV[2] the number of requests; then per request: '<cap> <n>', its cap on each tenant's waiting
--         (queued + scheduled) tasks (0 = none) and its number of tasks, then per task (records.enqueue_args):
--         '<id> <queue> <priority> <status> <attempts> <run_at> <delay> <type> <keyed> <step> <tenant>' (step:
--         1 / the tenant's fair-queue weight, hexq.core.fairness), the
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

local HEAD = '^([%w_.:%-]+) ([%w_.:%-]+) ([0-3]) (%l+) (%d+) (%S+) (%S+) ([%w_.:%-]+) ([01]) (%S+) (.*)$'

-- Parse every task before anything is decided: a malformed one fails the call with nothing written.
local requests, task_keys, keyed, capped = {}, {}, {}, false
local at = 3
for r = 1, tonumber(ARGV[2]) do
    local cap, n = string.match(ARGV[at], '^(%d+) (%d+)$')
    if not cap then fail('invalid key part or value in ' .. string.format('%q', ARGV[at])) end
    local request = {cap = tonumber(cap), tasks = {}}
    capped = capped or request.cap > 0
    n = tonumber(n)
    at = at + 1
    for i = 1, n do
        local id, queue, priority, status, attempts, run_at, delay, kind, has_key, step, tenant = string.match(ARGV[at], HEAD)
        if not id or #id > 64 or #queue > 64 or #kind > 64 or not tonumber(step) then fail('invalid key part or value in ' .. string.format('%q', ARGV[at])) end
        if not is_waiting(status) then fail('enqueue takes queued or scheduled tasks, not ' .. status) end
        local t = {id = id, queue = queue, priority = priority, attempts = attempts, run_at = run_at, delay = delay,
                   type = kind, tenant = tenant, step = step ~= '1' and step or nil, data = ARGV[at + 1]}
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

-- Tasks of this call stored before it: none, in the common case, which one EXISTS tells.
local before = 0
for i = 1, #task_keys, CHUNK do
    before = before + redis.call('EXISTS', unpack(task_keys, i, last_of(task_keys, i)))
end
local new = #task_keys  -- nothing to decide, in the common case: every task is new, no request capped
if before > 0 or #keyed > 0 or capped then new = decide_all(requests, keyed, before) end

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
                -- Its turn now (fair queues); a scheduled task gets one when it is promoted ('' until then).
                if status == 'queued' then t.turn = next_turn(t.queue, t.priority, t.tenant, t.step, seq) end
                if t.idem then
                    redis.call('HSET', task_key(t.id), 'data', t.data, 'status', status, 'attempts', t.attempts,
                               'queue', t.queue, 'priority', t.priority, 'type', t.type, 'tenant', t.tenant,
                               'seq', seq, 'created_at', now_at, 'run_at', due, 'turn', t.turn or '',
                               'idem', t.idem, 'fp', t.fp)
                    idem_fields[#idem_fields + 1] = t.idem
                    idem_fields[#idem_fields + 1] = t.id
                else
                    redis.call('HSET', task_key(t.id), 'data', t.data, 'status', status, 'attempts', t.attempts,
                               'queue', t.queue, 'priority', t.priority, 'type', t.type, 'tenant', t.tenant,
                               'seq', seq, 'created_at', now_at, 'run_at', due, 'turn', t.turn or '')
                end
                if t.step then redis.call('HSET', task_key(t.id), 'step', t.step) end  -- a weighted tenant's
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
