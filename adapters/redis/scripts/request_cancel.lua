-- request_cancel: ask the worker running a task to stop it (its next heartbeat says so).
-- KEYS[1] the partition prefix   ARGV[1] the clock mode (see _lib.lua; not read)
-- ARGV[2] task id
-- Returns: the task's record (records.RECORD_FIELDS) if it is running (now marked cancel = '1'), else
--          false. The mark goes with the lease: the task's next full write clears it (rewrite()).

local key = task_key(part(ARGV[2]))
if redis.call('HGET', key, 'status') ~= 'running' then return false end
redis.call('HSET', key, 'cancel', '1')
return record(key)
