-- breaker_put: compare-and-set one circuit breaker (BreakerStore.put_breaker).
-- KEYS[1] the partition prefix   ARGV[1] the clock mode (see _lib.lua; not read)
-- ARGV[2] the breaker's name   ARGV[3] the version the writer read (0: none stored)   ARGV[4] its new state (JSON)
-- Key: breakers  HASH  breaker name -> '<version> <state as JSON>'
-- Returns: the new version, or 0 when the stored version is not ARGV[3] (another writer got there first).

local name = part(ARGV[2])
local expected = tonumber(ARGV[3])
local stored = redis.call('HGET', P .. 'breakers', name)
local version = 0
if stored then version = tonumber(string.match(stored, '^(%d+) ')) end
if version ~= expected then return 0 end
redis.call('HSET', P .. 'breakers', name, (version + 1) .. ' ' .. ARGV[4])
return version + 1
