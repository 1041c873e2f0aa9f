-- A: id, worker, attempt. Reply: 1 if given back, 0 if not ours, begun or final.
local id = A[1]
local h = redis.call('HMGET', k('job', id), 'status', 'attempt', 'worker')
if h[1] ~= 'queued' or not ours(h, A[2], A[3]) then return 0 end
redis.call('HSET', k('job', id), 'worker', '')
redis.call('HINCRBY', k('job', id), 'released', 1)  -- not counted against JOB_MAX_ATTEMPTS
redis.call('ZADD', k('leases'), NOW, id)  -- due now: the next reaper re-sends it
return 1
