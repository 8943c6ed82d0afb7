-- settle: write each leased task's new state if its lease token is still current.
-- KEYS    the fixed block (see _lib.lua)
-- ARGV[1..5] the common prefix (see _lib.lua)
-- ARGV[6..] per settlement: the lease token, then the task's 11 values (records.task_args)
-- Returns: one entry per settlement: 1 if written, 0 where the token is stale (the lease expired
--          and was reclaimed, or the task was settled already).
-- A settled task leaves the lease set and the running set, and joins the indexes of its new
-- status: ready (queued: released), delayed (scheduled: a retry), finished (succeeded) or dead.
-- Its times are the server's (see write() in _lib.lua): a retry is due its delay after now.

local now_at = now()
local out = {}
for at = 6, #ARGV, TASK_ARGS + 1 do
    local t = task_at(at + 1)
    local key = task_key(t.id)
    local status, token = unpack(redis.call('HMGET', key, 'status', 'token'))
    if status == 'running' and token == ARGV[at] then
        local seq = redis.call('HGET', key, 'seq')
        unindex(t.id, key)
        write(key, t, now_at)
        index(t.id, t.status, t.queue, t.priority, seq, t.run_at, t.finished_at)
        count_waiting(t.tenant, t.status, 1)
        if FINISHED[t.status] then finished(t.id) end
        out[#out + 1] = 1
    else
        out[#out + 1] = 0
    end
end
return out
