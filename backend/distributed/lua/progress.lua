-- A: id, worker, attempt, step, total. Reply: 0 if no longer ours or final; else 1, or 2 when
-- an interrupt was asked (3: asked as a skip), which the worker then passes on to its run.
local id = A[1]
local h = redis.call('HMGET', k('job', id), 'status', 'attempt', 'worker')
if not ours(h, A[2], A[3]) then return 0 end
redis.call('HSET', k('job', id), 'step', A[4], 'total', A[5])
redis.call('ZADD', k('leases'), NOW + LEASE, id)  -- a worker that reports progress is alive
local asked = redis.call('HGET', k('job', id), 'interrupted')
if asked == 'skip' then return 3 elseif asked then return 2 end
return 1
