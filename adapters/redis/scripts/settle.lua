-- settle: write each leased task's new state if its lease token is still current (see _settle.lua).
-- KEYS[1] the partition prefix   ARGV[1] the clock mode (see _lib.lua)
-- ARGV[2..] two values per settlement (records.settle_args)
-- Returns: one entry per settlement: 1 if written, 0 where the token is stale.

local batch = parse_settlements(ARGV, 2, #ARGV)
return settle(batch, now())
