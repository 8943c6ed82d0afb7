-- ratelimit: take one token from a token bucket (the RateLimiter port; core/ratelimit.py `take`).
-- KEYS[1] the partition prefix   ARGV[1] the clock mode (see _lib.lua; only the test clock is read)
-- KEYS[2] hexq:{p}:rate:<sha256 of the bucket name, 32 hex>   HASH tokens, updated (seconds)
-- ARGV[2] rate (tokens a second, > 0)   ARGV[3] burst (bucket size, >= 1)
-- Returns: '0' when a token was taken, else the seconds until one will be there, as text
--          (a Lua number would be truncated to an integer on its way out).
-- Time is the server's TIME, so every API process shares one clock. A bucket that is full again
-- has nothing worth keeping: the key expires then (not in test-clock mode, where TTLs would run
-- on real time while the bucket's clock is fake).

local SLACK_SECONDS = 1e-6  -- as hexq.core.ratelimit.SLACK_SECONDS
local rate, burst = tonumber(ARGV[2]), tonumber(ARGV[3])
if not rate or rate <= 0 or rate ~= rate or rate == math.huge or not burst or burst < 1 then
    fail('rate must be above 0 and burst at least 1')
end
local at = now()
local tokens, updated = unpack(redis.call('HMGET', KEYS[2], 'tokens', 'updated'))
if tokens then
    tokens = math.min(burst, tonumber(tokens) + math.max(0, at - tonumber(updated)) * rate)
else
    tokens = burst
end

local wait = 0
if tokens + rate * SLACK_SECONDS >= 1 then
    tokens = math.max(0, tokens - 1)
else
    wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[2], 'tokens', fmt(tokens), 'updated', fmt(at))
if ARGV[1] ~= '1' then
    redis.call('PEXPIRE', KEYS[2], math.ceil((burst - tokens) / rate * 1000) + 1000)
end
return fmt(wait)
