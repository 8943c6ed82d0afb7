-- schedule_advance: fire a schedule once; compare-and-set its next run.
-- KEYS[1] hexq:{p}:schedules   HASH: d:<name> -> schedule JSON, r:<name> -> "<next_run>|<last_run>"
-- ARGV[1] the schedule's runs field (r:<name>)   ARGV[2] expected next_run   ARGV[3] new next_run
-- Returns: 1 if next_run was the expected one (now next_run = ARGV[3], last_run = ARGV[2]);
--          0 if another poller fired it first or the schedule is gone.
-- Numbers are compared as doubles: the client writes them with repr(), which round-trips exactly.

local runs = redis.call('HGET', KEYS[1], ARGV[1])
if not runs then return 0 end
local next_run = string.match(runs, '^([^|]*)|')
if tonumber(next_run) ~= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3] .. '|' .. ARGV[2])
return 1
