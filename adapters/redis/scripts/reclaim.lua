-- reclaim: take over running tasks whose lease expired (expiry <= now), under a fresh token.
-- KEYS[1] the partition prefix   ARGV[1] the clock mode (see _lib.lua)
-- ARGV[2] limit   ARGV[3] lease seconds
-- Returns: {expiry, leases}: the new expiry as text, and one lease per task, earliest expiry first:
--          a record (records.RECORD_FIELDS), then the token and '1' if the task's cancellation was
--          requested (else '0'). The new token fences out the worker that lost the lease; the caller
--          settles each lease (retry or dead), or it expires again.

local at = now()
local expires = at + tonumber(ARGV[3])
local ids = due(LEASES, micros(at), tonumber(ARGV[2]))
local found = {}
for _, id in ipairs(ids) do
    local key = task_key(id)
    local r = redis.call('HMGET', key, 'data', 'status', 'attempts', 'started_at', 'worker_id', 'created_at',
                         'run_at', 'finished_at', 'cancel')
    if r[2] == 'running' then
        r[9] = (r[9] == '1') and '1' or '0'
        found[#found + 1] = {id = id, key = key, r = r}
    else
        zrem(LEASES, id)  -- a damaged index entry; nothing holds this lease
    end
end
local out = {}
if #found > 0 then
    local first_token = redis.call('INCRBY', P .. 'token', #found) - #found
    for i, t in ipairs(found) do
        redis.call('HSET', t.key, 'token', first_token + i)
        zadd(LEASES, micros(expires), t.id)
        out[i] = {t.r[1], t.r[2], t.r[3], t.r[4], t.r[5], t.r[6], t.r[7], t.r[8], first_token + i, t.r[9]}
    end
end
flush()
return {fmt(expires), out}
