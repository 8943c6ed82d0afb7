-- claim: promote due tasks, then lease up to n ready tasks across a set of queues (see _claim.lua).
-- KEYS[1] the partition prefix   ARGV[1] the clock mode (see _lib.lua)
-- ARGV[2] n   ARGV[3] lease seconds   ARGV[4] worker id   ARGV[5] promote limit
-- ARGV[6..] queue names
-- Returns: {now, expiry, leases, next_due_in} (see _claim.lua): now is every lease's started_at,
--          expiry every lease's expiry, both as text.

local queues = queue_names(ARGV, 6)
local at = now()
local lease_seconds = tonumber(ARGV[3])
local leases, next_due_in = unpack(claim(at, tonumber(ARGV[2]), lease_seconds, ARGV[4], tonumber(ARGV[5]), queues))
return {fmt(at), fmt(at + lease_seconds), leases, next_due_in}
