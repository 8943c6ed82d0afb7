-- promote: move scheduled tasks whose run_at has come (by the server's clock) to their ready sets.
-- KEYS    the fixed block (see _lib.lua)
-- ARGV[1..5] the common prefix (see _lib.lua)
-- ARGV[6] limit
-- Returns: how many tasks moved (each also wakes one blocked claimer of its queue).

return promote(now(), tonumber(ARGV[6]))
