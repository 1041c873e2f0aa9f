-- A: id, worker, attempt, batch_size, seconds since the run began (on Redis's clock, so that
-- run_seconds never mixes two hosts' clocks). Reply: 1 if begun, 0 if not ours or final.
local id = A[1]
local h = redis.call('HMGET', k('job', id), 'status', 'attempt', 'worker')
if not ours(h, A[2], A[3]) then return 0 end
local started = string.format('%.6f', t[1] + t[2] / 1e6 - math.max(0, tonumber(A[5]) or 0))
redis.call('HSET', k('job', id), 'status', 'running', 'started_at', started, 'batch_size', A[4])
redis.call('ZREM', k('waiting'), id)
redis.call('ZADD', k('leases'), NOW + LEASE, id)
return 1
