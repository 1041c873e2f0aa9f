-- A: worker, then id, attempt pairs. Reply: the ids that are no longer this worker's.
local lost = {}
for i = 2, #A, 2 do
  local id = A[i]
  local h = redis.call('HMGET', k('job', id), 'status', 'attempt', 'worker')
  if not ours(h, A[1], A[i + 1]) then
    lost[#lost + 1] = id
  else
    redis.call('ZADD', k('leases'), NOW + LEASE, id)
  end
end
return lost
