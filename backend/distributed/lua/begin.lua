-- A: id, worker, attempt, batch_size. Reply: 1 if begun, 0 if not ours or final.
local id = A[1]
local h = redis.call('HMGET', k('job', id), 'status', 'attempt', 'worker')
if not ours(h, A[2], A[3]) then return 0 end
redis.call('HSET', k('job', id), 'status', 'running', 'started_at', WALL, 'batch_size', A[4])
redis.call('ZREM', k('waiting'), id)
redis.call('ZADD', k('leases'), NOW + LEASE, id)
return 1
