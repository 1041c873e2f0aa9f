-- A: id, worker, attempt, step, total. Reply: 1 if written, 0 if no longer ours or final.
local id = A[1]
local h = redis.call('HMGET', k('job', id), 'status', 'attempt', 'worker')
if not ours(h, A[2], A[3]) then return 0 end
redis.call('HSET', k('job', id), 'step', A[4], 'total', A[5])
redis.call('ZADD', k('leases'), NOW + LEASE, id)  -- a worker that reports progress is alive
return 1
