-- _settle: settle a batch of leased tasks (settle.lua, settle_and_claim.lua).
-- args[first..last] (the call's ARGV), two values per settlement (records.settle_args):
--   '<id> <token> <status> <attempts> <run_at> <delay>', then the task's data (JSON)
-- Each task whose lease token is still current gets the full write of its new state (rewrite(), on
-- the server's clock: a retry is due its delay after now) and leaves the lease set for the indexes of
-- its new status: ready (queued: released), delayed (scheduled: a retry), finished (succeeded) or dead.
-- parse_settlements(args, first, last) reads them all (and fails on a malformed one) before settle(batch,
-- now) writes anything.
-- Returns (settle): one entry per settlement, 1 if written, 0 where the token is stale (the lease
-- expired and was reclaimed, or the task was settled already). Flushes.

local SETTLE = '^([%w_.:%-]+) (%d+) (%l+) (%d+) (%S+) (%S+)$'

-- Every settlement is parsed before any is written: Redis keeps what a script wrote before an error.
local function parse_settlements(args, first, last)
    local batch = {}
    for i = first, last, 2 do
        local id, token, status, attempts, run_at, delay = string.match(args[i], SETTLE)
        if not id or #id > 64 then fail('invalid key part or value in ' .. string.format('%q', args[i])) end
        batch[#batch + 1] = {id, token, check_status(status), attempts, run_at, delay, args[i + 1]}
    end
    return batch
end

local function settle(batch, now_at)
    local out, done = {}, {}
    for i, s in ipairs(batch) do
        local id, status = s[1], s[3]
        local key = task_key(id)
        local current, held = unpack(redis.call('HMGET', key, 'status', 'token'))
        if current == 'running' and held == s[2] then
            local due = rewrite(key, status, s[4], s[5], s[6], s[7], now_at)
            leave(id, 'running')
            -- Only a retry, a release or a dead letter needs the task's queue, priority, seq or tenant.
            local at = (status ~= 'succeeded') and placement(key) or nil
            enter(id, status, at, due, now_at)
            if is_finished(status) then done[#done + 1] = key end
            out[i] = 1
        else
            out[i] = 0
        end
    end
    notify(done)
    flush()
    return out
end
