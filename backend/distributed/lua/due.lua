-- A: limit. Reply: the states of the jobs requeued (their lease expired, not final).
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', k('leases'), '-inf', NOW, 'LIMIT', 0, A[1])) do
  local h = redis.call('HMGET', k('job', id), 'status', 'seq')
  if not h[1] or final(h[1]) then
    redis.call('ZREM', k('leases'), id)  -- forgotten or settled meanwhile: nothing to send
  else
    if h[1] == 'running' then
      redis.call('HSET', k('job', id), 'step', 0)
      redis.call('ZADD', k('waiting'), h[2], id)  -- back at its admission place
    end
    redis.call('HSET', k('job', id), 'status', 'queued', 'worker', '')
    redis.call('ZADD', k('leases'), NOW + DELIVERY, id)
    out[#out + 1] = state(id)
  end
end
return out
