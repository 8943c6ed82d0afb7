-- leases: the leases of running tasks (LeaseReader), soonest expiry first. Read-only; nothing on the claim or
-- settle path calls it.
-- KEYS[1] the partition prefix   ARGV[1] the clock mode (see _lib.lua)
-- ARGV[2] a task id: only that task's lease; or '' for the soonest-expiring leases, then:
-- ARGV[3] limit   ARGV[4] tenant, or '' for every tenant   ARGV[5] at most this many `leases` entries examined
-- Returns: one entry per lease: a record (records.RECORD_FIELDS), then its token, its expiry (µs, as text) and
--          '1' if its cancellation was requested (else '0'). A task whose hash is not running is left out.
-- Cost: O(log n + examined), an HMGET per entry examined.

local ids, scores = {}, {}
if ARGV[2] ~= '' then
    local score = redis.call('ZSCORE', LEASES, ARGV[2])
    if score then ids[1], scores[1] = ARGV[2], score end
else
    local range = redis.call('ZRANGE', LEASES, 0, tonumber(ARGV[5]) - 1, 'WITHSCORES')
    for i = 1, #range, 2 do ids[#ids + 1], scores[#scores + 1] = range[i], range[i + 1] end
end
local limit, tenant, out = tonumber(ARGV[3]) or 1, ARGV[4], {}
for i, id in ipairs(ids) do
    if #out >= limit then break end
    local key = task_key(id)
    local r = record(key)
    local lease = redis.call('HMGET', key, 'token', 'cancel', 'tenant')
    if r[2] == 'running' and lease[1] and (tenant == '' or lease[3] == tenant) then
        r[9], r[10], r[11] = lease[1], fmt(score_micros(scores[i])), (lease[2] == '1') and '1' or '0'
        out[#out + 1] = r
    end
end
return out
