-- _lib: shared helpers, prepended to every task script when it is loaded (adapters/redis/_lua.py).
--
-- Every task script is called with the same fixed KEYS block and the same first five ARGV, all
-- built by adapters/redis/keys.py (the only place that spells key names):
--   KEYS[1] hexq:{p}:test:clock  test-clock mode only: the frozen "now" (seconds, as text)
--   KEYS[2] hexq:{p}:seq         INCR: FIFO order and the query cursor
--   KEYS[3] hexq:{p}:token       INCR: fencing tokens
--   KEYS[4] hexq:{p}:all         ZSET task id -> seq (every task)
--   KEYS[5] hexq:{p}:delayed     ZSET task id -> run_at (scheduled tasks)
--   KEYS[6] hexq:{p}:leases      ZSET task id -> lease expiry (running tasks)
--   KEYS[7] hexq:{p}:finished    ZSET task id -> finished_at (succeeded and cancelled tasks)
--   KEYS[8] hexq:{p}:idem        HASH json([tenant, idempotency key]) -> task id
--   KEYS[9] hexq:{p}:queues      SET of queue names that may have ready tasks (for stats)
--   KEYS[10] hexq:{p}:waiting    HASH tenant -> its queued + scheduled tasks (the per-tenant cap)
--   ARGV[1] '1' = test-clock mode (now is KEYS[1]), '0' = now is the server's TIME
--   ARGV[2] task hash prefix    hexq:{p}:task:    + id     HASH (fields below)
--   ARGV[3] status set prefix   hexq:{p}:status:  + status ZSET task id -> seq
--   ARGV[4] ready set prefix    hexq:{p}:ready:   + queue  ZSET task id -> (3 - priority) * 2^40 + seq
--   ARGV[5] wake list prefix    hexq:{p}:wake:    + queue  LIST of wake tokens for blocked claimers
-- Derived keys share the {p} hash tag with KEYS[1], so a script touches one cluster slot.
--
-- Task hash fields: data (the task as JSON, from its last full write by the client), status,
-- attempts, queue, priority, type, tenant, seq, idem; the times on the server's clock, created_at,
-- run_at and finished_at (they override data's: a client's clock may be off); while running: token,
-- expires, the started_at / worker_id the claim wrote (they override data until the next full
-- write), and cancel ('1' once request_cancel asked the worker to stop it). Scripts never decode or re-encode `data`: Lua's cjson would change user JSON ([] vs {}, digits).

local WAKE_CAP = 64          -- wake tokens kept per queue; each wakes one blocked claimer
local PRIORITY_BAND = 1099511627776  -- 2^40: seq stays exact below it, and 4 bands below 2^53
local STATUSES = {scheduled = true, queued = true, running = true, succeeded = true, failed = true,
                  dead = true, cancelled = true}
local WAITING = {queued = true, scheduled = true}
local FINISHED = {succeeded = true, dead = true, cancelled = true}

local function fail(message)
    error({err = 'ERR hexq: ' .. message})
end

-- Key parts are checked here too, so a client that skips keys.py cannot make stray keys.
local function part(value)
    if type(value) ~= 'string' or #value > 64 or not string.match(value, '^[%w_.:%-]+$') then
        fail('invalid key part ' .. string.format('%q', tostring(value)))
    end
    return value
end

-- Doubles as text with 17 significant digits: exact round trips (Lua's default keeps 14).
local function fmt(x)
    return string.format('%.17g', x)
end

local function now()
    if ARGV[1] == '1' then
        local frozen = redis.call('GET', KEYS[1])
        if not frozen then fail('test-clock mode but ' .. KEYS[1] .. ' is not set') end
        return tonumber(frozen)
    end
    local t = redis.call('TIME')
    return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local function task_key(id) return ARGV[2] .. part(id) end
local function ready_key(queue) return ARGV[4] .. part(queue) end
local function wake_key(queue) return ARGV[5] .. part(queue) end
local function status_key(status)
    if not STATUSES[status] then fail('unknown status ' .. string.format('%q', tostring(status))) end
    return ARGV[3] .. status
end

local function ready_score(priority, seq)
    return fmt((3 - tonumber(priority)) * PRIORITY_BAND + tonumber(seq))
end

local function wake(queue)
    local key = wake_key(queue)
    redis.call('LPUSH', key, '1')
    redis.call('LTRIM', key, 0, WAKE_CAP - 1)
end

-- Keep KEYS[10] in step: every move into or out of queued/scheduled passes here (a move between
-- the two, a promotion, changes nothing). A count that would drop to zero or below is deleted, so
-- tasks stored before the count existed make it read low, never stick high.
local function count_waiting(tenant, status, delta)
    if status ~= 'queued' and status ~= 'scheduled' then return end
    if redis.call('HINCRBY', KEYS[10], tenant, delta) <= 0 then redis.call('HDEL', KEYS[10], tenant) end
end

-- The task as the client decodes it (records.decode_task): data plus the fields that override it
-- (records.RECORD_FIELDS, in this order).
local function record(key)
    return redis.call('HMGET', key, 'data', 'status', 'attempts', 'started_at', 'worker_id', 'created_at',
                      'run_at', 'finished_at')
end

-- Lease a running task under a fresh fencing token until `expires`; `...` are more field/value
-- pairs for the same HSET. Returns the lease as the client decodes it (records.decode_lease).
local function lease(id, key, expires, ...)
    local token = redis.call('INCR', KEYS[3])
    redis.call('HSET', key, 'token', token, 'expires', expires, ...)
    redis.call('ZADD', KEYS[6], expires, id)
    local out = record(key)
    out[9] = token
    out[10] = expires
    return out
end

-- A task just finished (write() put it in a FINISHED status): wake the clients waiting for it, if any
-- (RedisBackend.wait_finished sets <task>:watch while it waits, then blocks on <task>:done).
local function finished(id)
    local key = task_key(id)
    if redis.call('EXISTS', key .. ':watch') == 1 then
        redis.call('LPUSH', key .. ':done', '1')
        redis.call('EXPIRE', key .. ':done', 60)
    end
end

-- Add a task to the indexes of its status. Queued tasks also wake one blocked claimer.
local function index(id, status, queue, priority, seq, run_at, finished_at)
    redis.call('ZADD', status_key(status), seq, id)
    if status == 'queued' then
        redis.call('ZADD', ready_key(queue), ready_score(priority, seq), id)
        redis.call('SADD', KEYS[9], queue)
        wake(queue)
    elseif status == 'scheduled' then
        redis.call('ZADD', KEYS[5], run_at, id)
    elseif (status == 'succeeded' or status == 'cancelled') and finished_at ~= '' then
        redis.call('ZADD', KEYS[7], finished_at, id)
    end
end

-- Remove a task from every index its current status put it in, and from its tenant's count.
local function unindex(id, key)
    local status, queue, tenant = unpack(redis.call('HMGET', key, 'status', 'queue', 'tenant'))
    redis.call('ZREM', status_key(status), id)
    count_waiting(tenant, status, -1)
    if status == 'queued' then
        redis.call('ZREM', ready_key(queue), id)
    elseif status == 'scheduled' then
        redis.call('ZREM', KEYS[5], id)
    elseif status == 'running' then
        redis.call('ZREM', KEYS[6], id)
    else
        redis.call('ZREM', KEYS[7], id)
    end
end

-- A full write of a task, from the 11 values records.task_args puts in ARGV from position `at`:
-- id, status, queue, priority, type, tenant, attempts, run_at, delay, idem, data.
-- Returns the values as a table; the caller indexes the task.
local function task_at(at)
    return {id = part(ARGV[at]), status = ARGV[at + 1], queue = part(ARGV[at + 2]), priority = ARGV[at + 3],
            type = ARGV[at + 4], tenant = ARGV[at + 5], attempts = ARGV[at + 6], run_at = ARGV[at + 7],
            delay = ARGV[at + 8], idem = ARGV[at + 9], data = ARGV[at + 10]}
end
local TASK_ARGS = 11

-- When a waiting task is due, by the server's clock `at`: max(run_at, now + delay). run_at is
-- absolute only when a client asked for a time; delays and backoffs come as durations.
local function due_at(t, at)
    return math.max(tonumber(t.run_at), at + tonumber(t.delay))
end

-- Write a task's whole state at server time `at`, by hexq.core.clock.stamped's rule: a waiting task is due
-- at due_at(), a finished one finished at `at`. Leaves t.run_at and t.finished_at as stored (for
-- index()); created_at is the enqueue's to set.
local function write(key, t, at)
    status_key(t.status)  -- validates before anything is written
    local gone = {'token', 'expires', 'started_at', 'worker_id', 'cancel'}
    local times = {}
    t.finished_at = ''
    if WAITING[t.status] then
        t.run_at = fmt(due_at(t, at))
        times = {'run_at', t.run_at}
        gone[#gone + 1] = 'finished_at'
    elseif FINISHED[t.status] then
        t.finished_at = fmt(at)
        times = {'finished_at', t.finished_at}
    end
    redis.call('HSET', key, 'data', t.data, 'status', t.status, 'attempts', t.attempts, 'queue', t.queue,
               'priority', t.priority, 'type', t.type, 'tenant', t.tenant, unpack(times))
    redis.call('HDEL', key, unpack(gone))
end

-- Move due scheduled tasks to their ready sets (at most `limit`, earliest first).
local function promote(at, limit)
    local ids = redis.call('ZRANGE', KEYS[5], '-inf', fmt(at), 'BYSCORE', 'LIMIT', 0, limit)
    local moved = 0
    for _, id in ipairs(ids) do
        local key = task_key(id)
        local status, queue, priority, seq = unpack(redis.call('HMGET', key, 'status', 'queue', 'priority', 'seq'))
        redis.call('ZREM', KEYS[5], id)
        if status == 'scheduled' then
            redis.call('ZREM', status_key('scheduled'), id)
            redis.call('HSET', key, 'status', 'queued')
            index(id, 'queued', queue, priority, seq)
            moved = moved + 1
        end
    end
    return moved
end
