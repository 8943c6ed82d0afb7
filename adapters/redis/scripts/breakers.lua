-- breakers: read every circuit breaker (BreakerStore.breaker_states) with the clock that stamps them.
-- KEYS[1] the partition prefix   ARGV[1] the clock mode (see _lib.lua)
-- Key: breakers  HASH  breaker name -> '<version> <state as JSON>' (hexq.core.breaker.BreakerState)
-- Returns: {now as text (17 significant digits), name1, value1, name2, value2, ...}.

local reply = {fmt(now())}
local fields = redis.call('HGETALL', P .. 'breakers')
for i = 1, #fields do reply[#reply + 1] = fields[i] end
return reply
