-- settle_and_claim: settle a batch, then claim, in one call (the SettleAndClaim port): a worker that
-- keeps its slots full pays one round trip per batch instead of two. The claim sees the settles.
-- KEYS[1] the partition prefix   ARGV[1] the clock mode (see _lib.lua)
-- ARGV[2] s, the number of settlements   ARGV[3 .. 2 + 2s] two values per settlement (_settle.lua)
-- then n, lease seconds, worker id, promote limit, and the queue names (as claim.lua's ARGV[2..])
-- Returns: {applied, now, expiry, leases}: applied has one entry per settlement (as settle.lua), the
--          rest is claim.lua's answer without next_due_in (this call never waits).

local last = 2 + 2 * tonumber(ARGV[2])
local batch = parse_settlements(ARGV, 3, last)
local queues = queue_names(ARGV, last + 5)
local at = now()
local applied = settle(batch, at)
local n, lease_seconds = tonumber(ARGV[last + 1]), tonumber(ARGV[last + 2])
local leases = {}
if n > 0 and #queues > 0 then
    leases = claim(at, n, lease_seconds, ARGV[last + 3], tonumber(ARGV[last + 4]), queues)[1]
end
return {applied, fmt(at), fmt(at + lease_seconds), leases}
