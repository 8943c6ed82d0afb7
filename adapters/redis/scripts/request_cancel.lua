-- request_cancel: ask the worker running a task to stop it (its next heartbeat says so).
-- KEYS    the fixed block (see _lib.lua)
-- ARGV[1..5] the common prefix (see _lib.lua)
-- ARGV[6] task id
-- Returns: the task's record (records.RECORD_FIELDS) if it is running (now marked cancel = '1'), else
--          false. The mark goes with the lease: any full write of the task deletes it (write()).

local key = task_key(ARGV[6])
if redis.call('HGET', key, 'status') ~= 'running' then return false end
redis.call('HSET', key, 'cancel', '1')
return record(key)
