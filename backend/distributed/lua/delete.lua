-- A: id, reason. Reply: the job's last state, or nil if unknown.
local id = A[1]
local s = state(id)
if not s then return false end
local h = redis.call('HMGET', k('job', id), 'status', 'model')
if not final(h[1]) then
  unfinished_out(id, h[2])
  redis.call('PUBLISH', k('cancel'), id)
end
forget(id, A[2])
redis.call('RPUSH', k('done', id), 'deleted')  -- a waiter wakes and finds it gone
redis.call('PEXPIRE', k('done', id), DONE_MS)
return s
