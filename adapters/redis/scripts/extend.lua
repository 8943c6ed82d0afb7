-- extend: heartbeat; push each lease's expiry to now + lease seconds if its token is still current.
-- KEYS    the fixed block (see _lib.lua)
-- ARGV[1..5] the common prefix (see _lib.lua)
-- ARGV[6] lease seconds   ARGV[7..] pairs of (task id, token)
-- Returns: one entry per pair: {new expiry, '1' if the task's cancellation was requested else '0'},
--          or false (nil) where the token is stale.

local expires = fmt(now() + tonumber(ARGV[6]))
local out = {}
for at = 7, #ARGV, 2 do
    local id = ARGV[at]
    local key = task_key(id)
    local status, token, cancel = unpack(redis.call('HMGET', key, 'status', 'token', 'cancel'))
    if status == 'running' and token == ARGV[at + 1] then
        redis.call('HSET', key, 'expires', expires)
        redis.call('ZADD', KEYS[6], expires, id)
        out[#out + 1] = {expires, cancel or '0'}
    else
        out[#out + 1] = false
    end
end
return out
