-- reclaim: take over running tasks whose lease expired (expiry <= now), under a fresh token.
-- KEYS    the fixed block (see _lib.lua)
-- ARGV[1..5] the common prefix (see _lib.lua)
-- ARGV[6] limit   ARGV[7] lease seconds
-- Returns: one lease per task, earliest expiry first: a record (records.RECORD_FIELDS), then
--          the token, the expiry and '1' if the task's cancellation was requested (else '0'). The new token fences out the worker that lost the lease;
--          the caller settles each lease (retry or dead), or it expires again.

local at = now()
local expires = fmt(at + tonumber(ARGV[7]))
local ids = redis.call('ZRANGE', KEYS[6], '-inf', fmt(at), 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[6]))
local out = {}
for _, id in ipairs(ids) do
    local key = task_key(id)
    if redis.call('HGET', key, 'status') == 'running' then
        local taken = lease(id, key, expires)
        taken[11] = redis.call('HGET', key, 'cancel') or '0'
        out[#out + 1] = taken
    else
        redis.call('ZREM', KEYS[6], id)  -- a damaged index entry; nothing holds this lease
    end
end
return out
