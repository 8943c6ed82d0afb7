-- transition: compare-and-set a task's status, outside any lease (cancel, replay).
-- KEYS[1] the partition prefix   ARGV[1] the clock mode (see _lib.lua)
-- ARGV[2] the expected current status
-- ARGV[3] '<id> <status> <attempts> <run_at> <delay>'   ARGV[4] the task's data (records.transition_args)
-- Returns: the server time the task was written at (its times follow from it, see rewrite() in
--          _lib.lua) if the stored status was the expected one, else 0 (also when there is no such
--          task). A lease the task held ends here.

local id, status, attempts, run_at, delay = string.match(ARGV[3], '^([%w_.:%-]+) (%l+) (%d+) (%S+) (%S+)$')
if not id or #id > 64 then fail('invalid key part or value in ' .. string.format('%q', ARGV[3])) end
check_status(status)
local key = task_key(id)
if redis.call('HGET', key, 'status') ~= ARGV[2] then return 0 end
local at = now()
local place = placement(key)
leave(id, ARGV[2], place)
local due = rewrite(key, status, attempts, run_at, delay, ARGV[4], at)
enter(id, status, place, due, at)
if is_finished(status) then notify({key}) end
flush()
return fmt(at)
