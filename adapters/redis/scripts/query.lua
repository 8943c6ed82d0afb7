-- query: list tasks newest first (by seq), filtered, one page at a time, in a bounded scan.
-- KEYS[1] the partition prefix   ARGV[1] the clock mode (see _lib.lua; not read)
-- ARGV[2] status   ARGV[3] type   ARGV[4] queue   ARGV[5] tenant   ('' = any)
-- ARGV[6] limit   ARGV[7] cursor: continue below this seq ('' = from the newest)
-- ARGV[8] scan bound: at most this many index entries are examined per call
-- ARGV[9] priority ('' = any)   ARGV[10] created_after, ARGV[11] created_before: the window
--          created_after <= created_at < created_before, in seconds ('' = unbounded)
-- ARGV[12..] search forms (optional): keep only entries whose `data` holds one of them (a plain find; a
--          prefilter: data holds more than the payload and error, and the caller confirms each match)
-- Returns: {items, next_cursor, scanned, seqs} where items are records (records.RECORD_FIELDS), next_cursor
--          is a seq as text, or '' when the listing is complete, scanned the index entries examined, and seqs
--          each item's seq (a sharded listing merges shards' pages and continues each below its last item taken).
-- The scan walks status:<s> for the statuses that have one (scheduled, dead, cancelled), else every
-- task (`all`); the other filters, and the status, are checked per entry. When the bound is reached
-- before the page is full, the page comes back short with a cursor at the last examined entry, so a
-- client that follows cursors still sees every match exactly once.

local status = ARGV[2]
local filters = {type = ARGV[3], queue = ARGV[4], tenant = ARGV[5]}
local limit = tonumber(ARGV[6])
local bound = tonumber(ARGV[8])
local priority = ARGV[9]
local after, before = tonumber(ARGV[10]), tonumber(ARGV[11])
local source = ALL
if status ~= '' then
    check_status(status)
    if status == 'scheduled' or status == 'dead' or status == 'cancelled' then source = status_key(status) end
end
local needles = {}
for i = 12, #ARGV do needles[#needles + 1] = ARGV[i] end
local function wanted(key)
    if #needles == 0 then return true end
    local text = redis.call('HGET', key, 'data') or ''
    for _, needle in ipairs(needles) do
        if string.find(text, needle, 1, true) then return true end
    end
    return false
end
-- The priority and the window are read only for entries that passed the other filters.
local function placed(key)
    if priority == '' and not after and not before then return true end
    local level, created = unpack(redis.call('HMGET', key, 'priority', 'created_at'))
    created = tonumber(created)
    return (priority == '' or priority == level) and (not after or (created and created >= after))
        and (not before or (created and created < before))
end
local below = '+inf'
if ARGV[7] ~= '' then below = '(' .. ARGV[7] end

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
        local kind, queue, tenant, current = unpack(redis.call('HMGET', key, 'type', 'queue', 'tenant', 'status'))
        if kind and (status == '' or status == current) and (filters.type == '' or filters.type == kind)
                and (filters.queue == '' or filters.queue == queue)
                and (filters.tenant == '' or filters.tenant == tenant) and placed(key) and wanted(key) then
            found[#found + 1] = {key, seq}
            if #found > limit then break end
        end
    end
end

local items, cursor, seqs = {}, '', {}
for i = 1, math.min(limit, #found) do items[i] = record(found[i][1]); seqs[i] = found[i][2] end
if #found > limit then
    if limit > 0 then cursor = found[limit][2] end
elseif not done and last_seq then
    cursor = last_seq  -- the bound cut the scan short
end
return {items, cursor, scanned, seqs}
