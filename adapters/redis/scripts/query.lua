-- query: list tasks newest first (by seq), filtered, one page at a time, in a bounded scan.
-- KEYS    the fixed block (see _lib.lua)
-- ARGV[1..5] the common prefix (see _lib.lua)
-- ARGV[6] status   ARGV[7] type   ARGV[8] queue   ARGV[9] tenant   ('' = any)
-- ARGV[10] limit   ARGV[11] cursor: continue below this seq ('' = from the newest)
-- ARGV[12] scan bound: at most this many index entries are examined per call
-- Returns: {items, next_cursor} where items are records (records.RECORD_FIELDS) and next_cursor
--          is a seq as text, or '' when the listing is complete.
-- The scan walks the status's set when a status is given, else every task; the other filters are
-- checked per entry. When the bound is reached before the page is full, the page comes back short
-- with a cursor at the last examined entry, so a client that follows cursors still sees every
-- match exactly once.

local filters = {type = ARGV[7], queue = ARGV[8], tenant = ARGV[9]}
local limit = tonumber(ARGV[10])
local bound = tonumber(ARGV[12])
local source = KEYS[4]
if ARGV[6] ~= '' then source = status_key(ARGV[6]) end
local below = '+inf'
if ARGV[11] ~= '' then below = '(' .. ARGV[11] end

local found, scanned, last_seq, done = {}, 0, nil, false
while #found <= limit and scanned < bound and not done do
    local want = math.min(100, bound - scanned)
    local chunk = redis.call('ZRANGE', source, below, '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, want, 'WITHSCORES')
    if #chunk < 2 * want then done = true end
    for i = 1, #chunk, 2 do
        local id, seq = chunk[i], chunk[i + 1]
        scanned = scanned + 1
        last_seq = seq
        below = '(' .. seq
        local key = task_key(id)
        local kind, queue, tenant = unpack(redis.call('HMGET', key, 'type', 'queue', 'tenant'))
        if kind and (filters.type == '' or filters.type == kind) and (filters.queue == '' or filters.queue == queue)
                and (filters.tenant == '' or filters.tenant == tenant) then
            found[#found + 1] = {key, seq}
            if #found > limit then break end
        end
    end
end

local items, cursor = {}, ''
for i = 1, math.min(limit, #found) do items[i] = record(found[i][1]) end
if #found > limit then
    if limit > 0 then cursor = found[limit][2] end
elseif not done and last_seq then
    cursor = last_seq  -- the bound cut the scan short
end
return {items, cursor}
