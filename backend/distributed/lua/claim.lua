-- A: id, worker. Reply: {attempt, record, trimmed}; {0} to drop the message; {-1, trimmed}
-- when the attempt cap failed the job; nil if unknown.
local id, worker = A[1], A[2]
local job = k('job', id)
local h = redis.call('HMGET', job, 'status', 'attempt', 'released', 'worker', 'record', 'seq')
if not h[1] then return false end
if final(h[1]) then return {0} end
local lease = tonumber(redis.call('ZSCORE', k('leases'), id))
if h[4] ~= '' and lease and lease > NOW then return {0} end  -- a redelivered duplicate
local attempt = tonumber(h[2])
local tried = attempt - tonumber(h[3])  -- released attempts do not count
if tried >= MAXATT then
  settle(id, 'failed', '', '{"code":"generation_failed","message":"The job was tried '
    .. tried .. ' times (JOB_MAX_ATTEMPTS=' .. MAXATT
    .. ') and its worker stopped or stalled each time; it is not tried again."}')
  return {-1, TRIMMED}
end
if h[1] == 'running' then  -- its last worker died before the reaper saw it
  redis.call('HSET', job, 'status', 'queued', 'step', 0)
  redis.call('ZADD', k('waiting'), h[6], id)
end
attempt = attempt + 1
redis.call('HSET', job, 'attempt', attempt, 'worker', worker)
redis.call('ZADD', k('leases'), NOW + LEASE, id)
return {attempt, h[5], TRIMMED}
