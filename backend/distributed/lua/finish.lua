-- A: id, worker, attempt, status, result, error (JSON or ''), then inline images.
-- Reply: {1, trimmed} if written; {0} if a newer attempt owns the job or it is final.
local id = A[1]
local h = redis.call('HMGET', k('job', id), 'status', 'attempt', 'worker')
-- The attempt is the fence. The reaper may have cleared the worker without a new claim
-- since: this result is still the newest one, so it is taken.
local worker = (h[3] == '') and '' or A[2]
if not ours(h, worker, A[3]) then return {0} end
settle(id, A[4], A[5], A[6])
if #A > 6 then
  redis.call('DEL', k('inline', id))
  redis.call('RPUSH', k('inline', id), unpack(A, 7))
  redis.call('PEXPIRE', k('inline', id), INLINE_MS)
end
return {1, TRIMMED}
