-- now: the clock the scripts decide every due time by (the server's TIME, or the test clock).
-- KEYS[1] the partition prefix   ARGV[1] the clock mode (see _lib.lua)
-- Returns: now in seconds since the epoch, as text with 17 significant digits.

return fmt(now())
