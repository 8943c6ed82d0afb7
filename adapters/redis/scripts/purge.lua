-- purge: delete succeeded and cancelled tasks that finished more than `older_than` seconds ago.
-- KEYS    the fixed block (see _lib.lua)
-- ARGV[1..5] the common prefix (see _lib.lua)
-- ARGV[6] older_than seconds   ARGV[7] limit
-- Returns: how many tasks were deleted. Their idempotency keys become free again.

local cutoff = now() - tonumber(ARGV[6])
local ids = redis.call('ZRANGE', KEYS[7], '-inf', '(' .. fmt(cutoff), 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[7]))
local deleted = 0
for _, id in ipairs(ids) do
    local key = task_key(id)
    local status, idem = unpack(redis.call('HMGET', key, 'status', 'idem'))
    if status == 'succeeded' or status == 'cancelled' then
        unindex(id, key)
        redis.call('ZREM', KEYS[4], id)
        if idem and redis.call('HGET', KEYS[8], idem) == id then redis.call('HDEL', KEYS[8], idem) end
        redis.call('DEL', key)
        deleted = deleted + 1
    else
        redis.call('ZREM', KEYS[7], id)
    end
end
return deleted
