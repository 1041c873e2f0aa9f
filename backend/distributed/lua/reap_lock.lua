-- A: worker, ms. Reply: 1 if this worker holds the reaper lock now (it keeps it while alive).
local key = k('reap_lock')
if redis.call('GET', key) == A[1] then
  redis.call('PEXPIRE', key, A[2])
  return 1
end
if redis.call('SET', key, A[1], 'NX', 'PX', A[2]) then return 1 end
return 0
