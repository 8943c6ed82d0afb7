-- transition: compare-and-set a task's status, outside any lease (cancel, replay).
-- KEYS    the fixed block (see _lib.lua)
-- ARGV[1..5] the common prefix (see _lib.lua)
-- ARGV[6] the expected current status   ARGV[7..17] the task's 11 values (records.task_args)
-- Returns: the server time the task was written at (its times follow from it, see write() in
--          _lib.lua) if the stored status was the expected one, else 0 (also when there is no such
--          task). A lease the task held ends here.

local t = task_at(7)
local key = task_key(t.id)
if redis.call('HGET', key, 'status') ~= ARGV[6] then return 0 end
local at = now()
local seq = redis.call('HGET', key, 'seq')
unindex(t.id, key)
write(key, t, at)
index(t.id, t.status, t.queue, t.priority, seq, t.run_at, t.finished_at)
count_waiting(t.tenant, t.status, 1)
if FINISHED[t.status] then finished(t.id) end
return fmt(at)
