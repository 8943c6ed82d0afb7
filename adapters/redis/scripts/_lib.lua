-- _lib: shared helpers, prepended to every task script (adapters/redis/_lua.py), and the head of the
-- function library that Redis 7 loads once instead.
--
-- Every task script is called with the same two leading values, built by adapters/redis/keys.py,
-- which begin() reads:
--   KEYS[1] hexq:{p}:   the partition's prefix. It routes the call to the partition's cluster slot;
--                       every key a script touches is this prefix plus one of the names below, so all
--                       of them share the {p} hash tag and the slot (keys.py spells the same names).
--   ARGV[1] '1' = test-clock mode (now is the test:clock key), '0' = now is the server's TIME; any other
--           text is test-clock mode with "now" given (a sharded deployment's shards read one global clock key,
--           which a script of another slot may not read, so the client reads it and passes it)
-- Helpers never read KEYS or ARGV themselves: in a function library those are each call's own.
--
-- Keys (names after the prefix):
--   test:clock  STRING test-clock mode only: the frozen "now" (seconds, as text)
--   seq         STRING INCRBY: FIFO order and the query cursor
--   token       STRING INCRBY: fencing tokens
--   task:<id>   HASH   one task (fields below)
--   all         ZSET   id -> seq, every task (listings, newest first)
--   ready:<q>   ZSET   id -> (3 - priority) * 2^40 + turn: ZRANGE 0 n-1 is strict priority, then turns (fair
--                      queues, hexq.core.fairness: tenants take turns, FIFO within a tenant)
--   turns:<q>   ZSET   fair queues: '<priority>' -> the level's clock (the highest turn claimed there; it starts
--                      at the level's first task's seq), '<priority>|<tenant>' -> that tenant's last turn there
--   delayed     ZSET   id -> run_at (µs, see micros()): the scheduled tasks, promoted by scripts that
--                      read the clock
--   leases      ZSET   id -> lease expiry (µs): the running tasks; reclaim takes expiry <= now
--   finished    ZSET   id -> finished_at (µs): the succeeded and cancelled tasks, for purge
--   status:<s>  ZSET   id -> seq for s = scheduled, dead, cancelled: listings of the statuses that are
--                      rare or long-lived (queued, running and succeeded are listed from `all`)
--   idem        HASH   json([tenant, key]) -> id
--   queues      SET    queues that may hold ready tasks; a queue with wake tokens is always in it
--   waiting     HASH   tenant -> its queued + scheduled tasks (the per-tenant cap)
--   wake:<q>    LIST   wake tokens for blocked claimers (at most WAKE_CAP); none while <q> is paused
--   paused      SET    queues whose tasks claims leave alone (QueueControl); read once per call (is_paused)
--   depth       HASH   '<state>|<priority>|<queue>' -> tasks, for state = scheduled and dead (Stats.depth;
--                      queued and running are read off ready:<q> and leases). Kept by the moves into and out
--                      of those two states, which the hot path (enqueue now, claim, succeed) never makes
--   workers     HASH   worker id -> '<started_at>|<last_seen>|<running>|<json: host, pid, queues>'
--   workers:alive ZSET worker id -> when its next beat is due (µs): the WorkerRegistry (beat.lua)
--   breakers    HASH   breaker name -> '<version> <state JSON>' (BreakerStore: breakers.lua, breaker_put.lua)
--   task:<id>:watch, task:<id>:done   FinishWaiter: set while a client waits / pushed when it finishes
-- How many tasks have each status is read off these sets (stats.lua): no counter to keep per task.
--
-- Task hash fields. Written when the task is stored, never changed: queue, priority, type, tenant,
-- seq, created_at (server time), and for a task with an idempotency key idem and fp (the request's
-- fingerprint), and for a weighted tenant's task step (1 / weight; absent: 1). Written the first time the
-- task is queued, then kept: turn (its place in the ready order, next_turn(); '' while it has none).
-- Rewritten by every full write (enqueue, settle, transition): data (the task as JSON,
-- from the client, without the fields below; scripts never decode or re-encode it: Lua's cjson would
-- change user JSON), status, attempts, run_at (server time, for waiting tasks) and finished_at
-- (server time, for finished ones, '' for waiting ones). Written by a claim: status, attempts, token,
-- started_at, worker_id (and cancel = '' over an old mark); by request_cancel: cancel = '1'.
-- token, started_at, worker_id and cancel belong to the lease: they mean something only while the
-- status is running (a full write leaves them; records.decode_task then reads data's started_at and
-- worker_id), and the next claim replaces them. records.decode_task lays the fields over data.
-- hexq 0.1.0 stored the same fields (plus a stale `expires`) and also a sorted set per status,
-- which purge.lua drops.
--
-- Writes to sorted sets and counters are collected per call and sent by flush(), one command per key,
-- so a batch of n tasks costs one HSET or HMGET per task and a handful of commands per call.

local P, TEST_CLOCK                  -- the call's partition prefix and clock mode: set by begin()
local DELAYED, LEASES, FINISHED, ALL -- P .. their names, once per call
local adds, rems, waiting, wakes, depths -- what the call changes besides task hashes, sent by flush()
local turns                          -- fair queues: turns:<q> as read and changed by this call (next_turn)
local paused                         -- the paused queues as a table, read on the call's first is_paused()

local function begin(keys, args)
    if keys[1] ~= P then  -- a function library keeps them from its last call
        P = keys[1]
        DELAYED, LEASES, FINISHED, ALL = P .. 'delayed', P .. 'leases', P .. 'finished', P .. 'all'
    end
    TEST_CLOCK = args[1] ~= '0' and args[1] or nil
    adds, rems, waiting, wakes, depths = {}, {}, {}, {}, {}
    turns = {}
    paused = nil
end

-- Whether claims skip `queue`. One SMEMBERS per call, and only for a call that claims or wakes: the set is
-- small (the queues someone paused) and usually missing.
local function is_paused(queue)
    if paused == nil then
        paused = {}
        for _, name in ipairs(redis.call('SMEMBERS', P .. 'paused')) do paused[name] = true end
    end
    return paused[queue] == true
end

local WAKE_CAP = 64                  -- wake tokens kept per queue (up to twice that between trims); each
                                     -- wakes one blocked claimer
local BAND = 1099511627776           -- 2^40: seq stays exact below it, and 4 bands below 2^53
local CHUNK = 1000                   -- arguments per variadic command

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

-- Doubles as text with 17 significant digits: exact round trips. Only replies need it: redis.call
-- itself writes a Lua number argument with full precision.
local function fmt(x)
    return string.format('%.17g', x)
end

local function now()
    if TEST_CLOCK and TEST_CLOCK ~= '1' then return tonumber(TEST_CLOCK) end
    if TEST_CLOCK then
        local frozen = redis.call('GET', P .. 'test:clock')
        if not frozen then fail('test-clock mode but ' .. P .. 'test:clock is not set') end
        return tonumber(frozen)
    end
    local t = redis.call('TIME')
    return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

-- The times that score delayed, leases and finished are whole microseconds since the epoch: a small
-- sorted set is a listpack, which keeps an integer score as an integer but a fraction as text that
-- every insert parses again (a batch of 100 leases cost 3x as much). hexq 0.1.0 scored them in
-- seconds: a score below OLD is one of those, and due() rescores it when it reads it.
local OLD = 1e12

local function micros(seconds)
    return math.floor(seconds * 1000000 + 0.5)
end

-- A score of one of those sets in microseconds, whichever unit it was written in.
local function score_micros(score)
    score = tonumber(score)
    if score < OLD then return micros(score) end
    return score
end

local function task_key(id) return P .. 'task:' .. id end
local function ready_key(queue) return P .. 'ready:' .. queue end
local function status_key(status) return P .. 'status:' .. status end

local function is_waiting(status) return status == 'queued' or status == 'scheduled' end
local function is_finished(status) return status == 'succeeded' or status == 'dead' or status == 'cancelled' end
local function is_status(status)
    return is_waiting(status) or is_finished(status) or status == 'running' or status == 'failed'
end
local function check_status(status)
    if not is_status(status) then fail('unknown status ' .. string.format('%q', tostring(status))) end
    return status
end

local function turns_key(queue) return P .. 'turns:' .. queue end

local function ready_score(priority, turn)
    return (3 - tonumber(priority)) * BAND + tonumber(turn)
end

-- Fair queues (hexq.core.fairness.next_turn, the reference): the turn of a tenant's next task in a queue and
-- level, max(its last turn there + step, the level's clock); a level with no clock yet starts it at `seq`.
-- `priority` is the level as text ('0'..'3'). One ZMSCORE per (queue, level, tenant) and call, kept in
-- nested tables (no string built per task); flush() writes what changed, one ZADD per queue.
local function next_turn(queue, priority, tenant, step, seq)
    local levels = turns[queue]
    if not levels then levels = {}; turns[queue] = levels end
    local level = levels[priority]
    if not level then level = {lasts = {}, changed = false}; levels[priority] = level end
    local last = level.lasts[tenant]
    if last == nil then
        local got = redis.call('ZMSCORE', turns_key(queue), priority, priority .. '|' .. tenant)
        if level.clock == nil then level.clock = tonumber(got[1]) or false end
        last = tonumber(got[2]) or false
    end
    local clock = level.clock
    local turn = clock or tonumber(seq)
    if last then turn = math.max(last + (step and tonumber(step) or 1), turn) end
    if not clock then level.clock, level.started = turn, true end
    level.lasts[tenant], level.changed = turn, true
    return turn
end

-- A claim moves each level's clock to the highest turn it took there (ZADD GT: a clock never goes back, even
-- when a retry with an old turn is taken). `range`: what ZPOPMIN/ZRANGE WITHSCORES gave, of which the claim
-- took the first k (member, score) pairs, lowest score first.
local function move_clocks(queue, range, k)
    local first, last = tonumber(range[2]), tonumber(range[2 * k])
    local band = math.floor(last / BAND)
    if math.floor(first / BAND) == band then  -- one level (the usual case): its highest turn is the last taken
        redis.call('ZADD', turns_key(queue), 'GT', last - band * BAND, tostring(3 - band))
        return
    end
    local high, args = {}, {}
    for j = 2, 2 * k, 2 do
        local score = tonumber(range[j])
        band = math.floor(score / BAND)
        high[band] = score - band * BAND  -- ascending: the last one of each band is its highest
    end
    for b, turn in pairs(high) do
        args[#args + 1] = turn
        args[#args + 1] = tostring(3 - b)
    end
    redis.call('ZADD', turns_key(queue), 'GT', unpack(args))
end

local function zadd(key, score, member)
    local list = adds[key]
    if not list then list = {}; adds[key] = list end
    list[#list + 1] = score
    list[#list + 1] = member
end

local function zrem(key, member)
    local list = rems[key]
    if not list then list = {}; rems[key] = list end
    list[#list + 1] = member
end

-- A tenant's waiting count follows every move into or out of queued/scheduled (a move between the two
-- changes nothing).
local function count_waiting(tenant, status, n)
    if is_waiting(status) then waiting[tenant] = (waiting[tenant] or 0) + n end
end

-- The depth of the scheduled and dead tasks of a queue and priority follows every move into or out of them
-- (`at` = the task's placement()).
local function count_depth(status, at, n)
    local field = status .. '|' .. at.priority .. '|' .. at.queue
    depths[field] = (depths[field] or 0) + n
end

-- One wake token per queue and call, for a queue that got ready tasks (or may still have some).
local function wake(queue)
    wakes[queue] = true
end

-- Lua's unpack() stops near 8000 values, so long argument lists go in chunks.
local function last_of(list, i)
    return math.min(i + CHUNK - 1, #list)
end

local function flush()
    for key, list in pairs(rems) do
        for i = 1, #list, CHUNK do redis.call('ZREM', key, unpack(list, i, last_of(list, i))) end
    end
    for key, list in pairs(adds) do
        for i = 1, #list, CHUNK do redis.call('ZADD', key, unpack(list, i, last_of(list, i))) end
    end
    -- A count that would drop to zero or below is deleted, so tasks stored before the count existed
    -- make it read low, never stick high.
    for tenant, n in pairs(waiting) do
        if n ~= 0 and redis.call('HINCRBY', P .. 'waiting', tenant, n) <= 0 then
            redis.call('HDEL', P .. 'waiting', tenant)
        end
    end
    for queue, levels in pairs(turns) do  -- one pair per (level, tenant) the call gave turns to, one ZADD a queue
        local args = {}
        for priority, level in pairs(levels) do
            if level.changed then
                if level.started then args[#args + 1], args[#args + 2] = level.clock, priority end
                for tenant, turn in pairs(level.lasts) do
                    if turn then args[#args + 1], args[#args + 2] = turn, priority .. '|' .. tenant end
                end
            end
        end
        if #args > 0 then redis.call('ZADD', turns_key(queue), unpack(args)) end
    end
    for field, n in pairs(depths) do  -- as the waiting counts (tasks stored before the depth existed read low)
        if n ~= 0 and redis.call('HINCRBY', P .. 'depth', field, n) <= 0 then redis.call('HDEL', P .. 'depth', field) end
    end
    -- A queue with wake tokens is in `queues` (a claim that finds it empty removes both together), so
    -- only a wake list that was empty needs the SADD. A paused queue gets no token (no claimer could take
    -- its tasks; resume pushes one), only its place in `queues`, which stats and backlog read.
    for queue in pairs(wakes) do
        local key = P .. 'wake:' .. queue
        local tokens = is_paused(queue) and 0 or redis.call('LPUSH', key, '1')
        if tokens == 0 then
            redis.call('SADD', P .. 'queues', queue)
        elseif tokens == 1 then
            redis.call('SADD', P .. 'queues', queue)
        elseif tokens > 2 * WAKE_CAP then
            redis.call('LTRIM', key, 0, WAKE_CAP - 1)
        end
    end
    adds, rems, waiting, wakes, depths = {}, {}, {}, {}, {}
    turns = {}
end

-- The task as records.decode_task reads it (records.RECORD_FIELDS, in this order).
local function record(key)
    return redis.call('HMGET', key, 'data', 'status', 'attempts', 'started_at', 'worker_id', 'created_at',
                      'run_at', 'finished_at')
end

-- The fields that place a task in the indexes of its status (`key` too, for a first turn: see ready()).
local function placement(key)
    local queue, priority, seq, tenant, turn, step = unpack(redis.call('HMGET', key, 'queue', 'priority', 'seq',
                                                                      'tenant', 'turn', 'step'))
    return {key = key, queue = queue, priority = priority, seq = seq, tenant = tenant, turn = turn, step = step}
end

-- The ready score of a task being queued (`at` = its placement()): by the turn it kept, or, the first time it
-- is queued (or for a task stored before fair queues), a new turn, written to its hash.
local function ready(at)
    if at.turn and at.turn ~= '' then return ready_score(at.priority, at.turn) end
    local turn = next_turn(at.queue, at.priority, at.tenant, at.step, at.seq)
    redis.call('HSET', at.key, 'turn', turn)
    at.turn = turn
    return ready_score(at.priority, turn)
end

-- Take task `id` out of the indexes of `status` (`at` = the placement(), needed for waiting and dead ones).
local function leave(id, status, at)
    if status == 'queued' then
        zrem(ready_key(at.queue), id)
        count_waiting(at.tenant, status, -1)
    elseif status == 'scheduled' then
        zrem(DELAYED, id)
        zrem(status_key(status), id)
        count_waiting(at.tenant, status, -1)
        count_depth(status, at, -1)
    elseif status == 'running' then
        zrem(LEASES, id)
    elseif status == 'succeeded' then
        zrem(FINISHED, id)
    elseif status == 'cancelled' then
        zrem(FINISHED, id)
        zrem(status_key(status), id)
    elseif status == 'dead' then
        zrem(status_key(status), id)
        count_depth(status, at, -1)
    end
end

-- Put task `id` in the indexes of `status`: due at `due` if scheduled, finished at `finished_at` if
-- succeeded or cancelled. A running task's lease is its claimer's to add.
local function enter(id, status, at, due, finished_at)
    if status == 'queued' then
        zadd(ready_key(at.queue), ready(at), id)
        count_waiting(at.tenant, status, 1)
        wake(at.queue)
    elseif status == 'scheduled' then
        zadd(DELAYED, micros(due), id)
        zadd(status_key(status), at.seq, id)
        count_waiting(at.tenant, status, 1)
        count_depth(status, at, 1)
    elseif status == 'succeeded' then
        zadd(FINISHED, micros(finished_at), id)
    elseif status == 'cancelled' then
        zadd(FINISHED, micros(finished_at), id)
        zadd(status_key(status), at.seq, id)
    elseif status == 'dead' then
        zadd(status_key(status), at.seq, id)
        count_depth(status, at, 1)
    end
end

-- A full write of a task's new state at server time `now_at`, by hexq.core.clock.stamped's rule: a
-- waiting task is due at max(run_at, now + delay) (run_at is absolute only when a client asked for a
-- time; delays and backoffs come as durations), a finished one finished now. Returns the due time.
local function rewrite(key, status, attempts, run_at, delay, data, now_at)
    if is_waiting(status) then
        local due = math.max(tonumber(run_at), now_at + tonumber(delay))
        redis.call('HSET', key, 'data', data, 'status', status, 'attempts', attempts, 'run_at', due,
                   'finished_at', '')
        return due
    elseif is_finished(status) then
        redis.call('HSET', key, 'data', data, 'status', status, 'attempts', attempts, 'finished_at', now_at)
    else
        redis.call('HSET', key, 'data', data, 'status', status, 'attempts', attempts)
    end
    return nil
end

-- Tasks just finished: wake the clients waiting for them, if any (RedisBackend.wait_finished sets
-- <task>:watch while it waits, then blocks on <task>:done). One EXISTS for the whole batch when
-- nobody waits, which is the common case.
local function notify(keys)
    local watched = 0
    for i = 1, #keys, CHUNK do
        local watches = {}
        for j = i, last_of(keys, i) do watches[#watches + 1] = keys[j] .. ':watch' end
        watched = watched + redis.call('EXISTS', unpack(watches))
    end
    if watched == 0 then return end
    for _, key in ipairs(keys) do
        if redis.call('EXISTS', key .. ':watch') == 1 then
            redis.call('LPUSH', key .. ':done', '1')
            redis.call('EXPIRE', key .. ':done', 60)
        end
    end
end

-- The ids in sorted set `key` scored up to `bound` (µs; below it if `before`), at most `limit`, lowest
-- first. A score in seconds (hexq 0.1.0) that is not due in fact is rescored instead of returned.
local function due(key, bound, limit, before)
    local range = redis.call('ZRANGE', key, '-inf', before and '(' .. fmt(bound) or bound, 'BYSCORE', 'LIMIT', 0,
                             limit, 'WITHSCORES')
    local ids, scores = {}, {}
    for i = 1, #range, 2 do
        local score = tonumber(range[i + 1])
        if score >= OLD then
            ids[#ids + 1], scores[#ids + 1] = range[i], score
        else
            score = micros(score)
            if score < bound or (score == bound and not before) then ids[#ids + 1], scores[#ids + 1] = range[i], score
            else zadd(key, score, range[i]) end
        end
    end
    return ids, scores
end

-- Move due scheduled tasks to their ready sets (at most `limit`, earliest first). Flushes. Tasks queued for
-- the first time get their turns in due order, then submit order (seq), as hexq.core.fairness says: the
-- delayed set orders tasks due at one moment by id.
local function by_due_then_seq(a, b)
    if a.due ~= b.due then return a.due < b.due end
    return a.seq < b.seq
end

local function promote(now_at, limit)
    local ids, dues = due(DELAYED, micros(now_at), limit)
    local moving = {}
    for i, id in ipairs(ids) do
        local key = task_key(id)
        local status, queue, priority, seq, tenant, turn, step = unpack(redis.call(
            'HMGET', key, 'status', 'queue', 'priority', 'seq', 'tenant', 'turn', 'step'))
        zrem(DELAYED, id)
        if status == 'scheduled' then
            zrem(status_key('scheduled'), id)
            count_depth('scheduled', {queue = queue, priority = priority}, -1)
            moving[#moving + 1] = {id = id, key = key, due = dues[i], queue = queue, priority = priority,
                                   seq = tonumber(seq), tenant = tenant, turn = turn, step = step}
        end
    end
    if #moving > 1 then table.sort(moving, by_due_then_seq) end
    for _, t in ipairs(moving) do
        if t.turn and t.turn ~= '' then  -- a retry keeps its place
            redis.call('HSET', t.key, 'status', 'queued')
        else  -- queued for the first time: its turn comes now
            t.turn = next_turn(t.queue, t.priority, t.tenant, t.step, t.seq)
            redis.call('HSET', t.key, 'status', 'queued', 'turn', t.turn)
        end
        zadd(ready_key(t.queue), ready_score(t.priority, t.turn), t.id)
        wake(t.queue)
    end
    flush()
    return #moving
end
