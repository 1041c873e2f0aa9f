-- A: id, model, keep ('1'|'0'), record (JSON, stored verbatim), total ('' if unknown).
-- Reply: {accepted, reason, retry_after, routed (a live worker has the model), outstanding, capacity}
local id, model = A[1], A[2]
local live = live_workers()
local out = redis.call('SCARD', k('active'))
if #live == 0 then return {0, 'no_workers', 0, 0, out, 0} end
local capacity, retry, routed = 0, nil, 0
for _, w in ipairs(live) do
  local info = redis.call('HMGET', k('worker', w), 'capacity', 'retry_after', 'models')
  capacity = capacity + (tonumber(info[1]) or 0)
  local after = tonumber(info[2]) or 1
  if retry == nil or after < retry then retry = after end
  for _, m in ipairs(cjson.decode(info[3] or '[]')) do
    if m == model then routed = 1 end
  end
end
if out >= capacity then return {0, 'full', math.max(1, retry), routed, out, capacity} end
if redis.call('EXISTS', k('job', id)) == 1 then return redis.error_reply('job ' .. id .. ' exists') end
local seq = redis.call('INCR', k('seq'))  -- admission order: positions, and requeues keep it
redis.call('HSET', k('job', id), 'record', A[4], 'model', model, 'keep', A[3],
  'status', 'queued', 'attempt', 0, 'released', 0, 'step', 0, 'total', A[5], 'seq', seq,
  'batch_size', '', 'started_at', '', 'finished_at', '', 'worker', '', 'error', '', 'result', '')
redis.call('SADD', k('active'), id)
redis.call('HINCRBY', k('by_model'), model, 1)
redis.call('ZADD', k('waiting'), seq, id)
redis.call('ZADD', k('leases'), NOW + DELIVERY, id)
return {1, '', 0, routed, out + 1, capacity}
