-- now: the clock the scripts decide every due time by (the server's TIME, or the test clock).
-- KEYS    the fixed block (see _lib.lua; only KEYS[1], the test clock, is read)
-- ARGV[1..5] the common prefix (see _lib.lua)
-- Returns: now in seconds since the epoch, as text with 17 significant digits.

return fmt(now())
