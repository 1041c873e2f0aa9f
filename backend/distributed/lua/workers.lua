-- Reply: {worker, info, ms since its beat} for each live worker.
local out = {}
for _, w in ipairs(live_workers()) do
  local beat = tonumber(redis.call('ZSCORE', k('workers'), w))
  out[#out + 1] = {w, redis.call('HGET', k('worker', w), 'info'), NOW - beat}
end
return out
