-- extend: heartbeat; push each lease's expiry to now + lease seconds if its token is still current.
-- KEYS[1] the partition prefix   ARGV[1] the clock mode (see _lib.lua)
-- ARGV[2] lease seconds   ARGV[3..] one '<task id> <token>' per lease
-- Returns: {expiry, entries}: the new expiry as text, and one entry per lease: '1' if the task's
--          cancellation was requested, '0' if not, or false (nil) where the token is stale.

local expires = now() + tonumber(ARGV[2])
local out = {}
for i = 3, #ARGV do
    local id, token = string.match(ARGV[i], '^([%w_.:%-]+) (%d+)$')
    if not id or #id > 64 then fail('invalid key part or value in ' .. string.format('%q', ARGV[i])) end
    local status, held, cancel = unpack(redis.call('HMGET', task_key(id), 'status', 'token', 'cancel'))
    if status == 'running' and held == token then
        zadd(LEASES, micros(expires), id)
        out[#out + 1] = (cancel == '1') and '1' or '0'
    else
        out[#out + 1] = false
    end
end
flush()
return {fmt(expires), out}
