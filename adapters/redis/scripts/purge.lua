-- purge: delete succeeded and cancelled tasks that finished more than `older_than` seconds ago.
-- KEYS[1] the partition prefix   ARGV[1] the clock mode (see _lib.lua)
-- ARGV[2] older_than seconds   ARGV[3] limit
-- Returns: how many tasks were deleted. Their idempotency keys become free again.
-- Also drops what hexq 0.1.0 kept and nothing reads any more: the sorted sets of the queued, running,
-- succeeded (and failed) tasks (a partition it stored is upgraded so on the poller's first tick).

redis.call('UNLINK', status_key('queued'), status_key('running'), status_key('succeeded'), status_key('failed'))
local cutoff = now() - tonumber(ARGV[2])
local ids = due(FINISHED, micros(cutoff), tonumber(ARGV[3]), true)
local gone = {}
for _, id in ipairs(ids) do
    local key = task_key(id)
    local status, idem = unpack(redis.call('HMGET', key, 'status', 'idem'))
    if status == 'succeeded' or status == 'cancelled' then
        leave(id, status)
        zrem(ALL, id)
        if idem and idem ~= '' and redis.call('HGET', P .. 'idem', idem) == id then
            redis.call('HDEL', P .. 'idem', idem)
        end
        gone[#gone + 1] = key
    else
        zrem(FINISHED, id)
    end
end
for i = 1, #gone, CHUNK do redis.call('DEL', unpack(gone, i, last_of(gone, i))) end
flush()
return #gone
