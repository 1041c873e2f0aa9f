-- Prepended to every script. ARGV[1..12] are the store's settings (store_scripts.settings_args);
-- a script's own arguments follow, as the table A. Key names are built here from the prefix,
-- so all keys must live on one Redis (no cluster slots).
local P = ARGV[1]
local TTL = tonumber(ARGV[2])          -- ms a finished job is kept (JOB_TTL_SECONDS)
local MAXFIN = tonumber(ARGV[3])       -- finished jobs kept at most (MAX_STORED_JOBS)
local LEASE = tonumber(ARGV[4])        -- ms a claim or renewal holds a job
local LIVE = tonumber(ARGV[5])         -- ms a heartbeat keeps a worker live (3 x HEARTBEAT)
local MAXATT = tonumber(ARGV[6])       -- JOB_MAX_ATTEMPTS
local DELIVERY = tonumber(ARGV[7])     -- ms an admitted job may wait for its first claim
local TTL_REASON, TRIM_REASON = ARGV[8], ARGV[9]
local DONE_MS = tonumber(ARGV[10])    -- ms the "done" list of a job lives (wait's BLPOP)
local SYNC_KEEP = tonumber(ARGV[11])  -- ms a finished sync job's record is kept
local INLINE_MS = tonumber(ARGV[12])  -- ms a sync job's images are kept
local A = {}
for i = 13, #ARGV do A[#A + 1] = ARGV[i] end

-- Redis' own clock: the machines' clocks differ, this one is shared.
local t = redis.call('TIME')
local NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local WALL = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))  -- exact, unlike tostring

local function k(...) return P .. ':' .. table.concat({...}, ':') end
local function final(status) return status == 'succeeded' or status == 'failed' or status == 'cancelled' end
-- h: HMGET status, attempt, worker. The run (worker, attempt) still holds the job.
local function ours(h, worker, attempt)
  return h[1] and not final(h[1]) and tonumber(h[2]) == tonumber(attempt) and h[3] == worker
end
local TRIMMED = {}  -- states of the jobs trimmed by this call (the caller deletes their files)

-- The live workers' ids; dead ones are dropped here (their beat is LIVE ms old or older).
local function live_workers()
  local dead = redis.call('ZRANGEBYSCORE', k('workers'), '-inf', NOW - LIVE)
  for _, w in ipairs(dead) do redis.call('DEL', k('worker', w)) end
  if #dead > 0 then redis.call('ZREMRANGEBYSCORE', k('workers'), '-inf', NOW - LIVE) end
  local live = {}
  for _, w in ipairs(redis.call('ZRANGEBYSCORE', k('workers'), '(' .. (NOW - LIVE), '+inf')) do
    if redis.call('EXISTS', k('worker', w)) == 1 then live[#live + 1] = w end
  end
  return live
end

-- The job's whole state as {HGETALL, waiting rank or false}.
local function state(id)
  local h = redis.call('HGETALL', k('job', id))
  if #h == 0 then return false end
  return {h, redis.call('ZRANK', k('waiting'), id)}
end

-- Out of the outstanding count, the waiting order and the leases (idempotent: SREM says
-- whether it was still counted, so the per-model count is decremented once).
local function unfinished_out(id, model)
  if redis.call('SREM', k('active'), id) == 1 then
    if redis.call('HINCRBY', k('by_model'), model, -1) <= 0 then
      redis.call('HDEL', k('by_model'), model)
    end
  end
  redis.call('ZREM', k('waiting'), id)
  redis.call('ZREM', k('leases'), id)
end

local function forget(id, reason)
  redis.call('DEL', k('job', id), k('inline', id), k('preview', id))
  redis.call('ZREM', k('finished'), id)
  redis.call('SET', k('gone', id), reason, 'PX', 10 * TTL)
end

-- The job becomes final: waiters are woken, it is kept TTL ms (an async one) and the oldest
-- finished jobs beyond MAXFIN are forgotten. Sync jobs are neither kept long nor counted:
-- a burst of them must not trim async results that clients still poll.
local function settle(id, status, result, err)
  local job = k('job', id)
  local h = redis.call('HMGET', job, 'model', 'keep')
  unfinished_out(id, h[1])
  redis.call('HSET', job, 'status', status, 'finished_at', WALL, 'result', result, 'error', err)
  redis.call('DEL', k('preview', id))  -- a finished job has its images: previews are done
  redis.call('RPUSH', k('done', id), status)
  redis.call('PEXPIRE', k('done', id), DONE_MS)
  if h[2] ~= '1' then
    redis.call('PEXPIRE', job, math.min(TTL, SYNC_KEEP))
    return
  end
  redis.call('PEXPIRE', job, TTL)
  -- Written now, outliving the record by 10 x TTL: Redis drops the record itself.
  redis.call('SET', k('gone', id), TTL_REASON, 'PX', 11 * TTL)
  redis.call('ZADD', k('finished'), NOW, id)
  redis.call('ZREMRANGEBYSCORE', k('finished'), '-inf', NOW - TTL)  -- expired already
  local excess = redis.call('ZCARD', k('finished')) - MAXFIN
  if excess > 0 then
    for _, old in ipairs(redis.call('ZRANGE', k('finished'), 0, excess - 1)) do
      local s = state(old)
      if s then TRIMMED[#TRIMMED + 1] = s end
      forget(old, TRIM_REASON)
    end
  end
end
