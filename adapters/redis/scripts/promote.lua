-- promote: move scheduled tasks whose run_at has come (by the server's clock) to their ready sets.
-- KEYS[1] the partition prefix   ARGV[1] the clock mode (see _lib.lua)
-- ARGV[2] limit
-- Returns: how many tasks moved (each queue that got some also gets one wake token).

return promote(now(), tonumber(ARGV[2]))
