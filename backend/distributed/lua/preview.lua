-- A: id, worker, attempt, step, total, media_type, width, height, data. Reply: 1 if written,
-- 0 if no longer ours or final. settle and forget delete the preview key.
local id = A[1]
local h = redis.call('HMGET', k('job', id), 'status', 'attempt', 'worker')
if not ours(h, A[2], A[3]) then return 0 end
local key = k('preview', id)
redis.call('HSET', key, 'step', A[4], 'total', A[5], 'media_type', A[6], 'width', A[7],
  'height', A[8], 'data', A[9])
redis.call('PEXPIRE', key, TTL + LEASE)
redis.call('HSET', k('job', id), 'preview_step', A[4])
return 1
