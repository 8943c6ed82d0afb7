-- workers: the live workers (the WorkerRegistry): those whose next beat is due after now, by the server's clock.
-- KEYS[1] the partition prefix   ARGV[1] the clock mode (see _lib.lua)
-- Returns: a flat list {id, '<started_at>|<last_seen>|<running>|<json>', ...}, in no particular order.
-- Cost: O(log n + live workers). Read-only: overdue entries are pruned by the beats (worker_beat.lua).

local ids = redis.call('ZRANGE', P .. 'workers:alive', '(' .. fmt(micros(now())), '+inf', 'BYSCORE')
local out = {}
for i = 1, #ids, CHUNK do
    local values = redis.call('HMGET', P .. 'workers', unpack(ids, i, last_of(ids, i)))
    for j, value in ipairs(values) do
        if value then out[#out + 1] = ids[i + j - 1]; out[#out + 1] = value end
    end
end
return out
