-- A: everyone ('1': no owner given), owner, kind ('interrupt' or 'skip'). Marks the running
-- jobs (of that owner) interrupted; their workers learn it from progress(). Reply: how many.
local count = 0
for _, id in ipairs(redis.call('SMEMBERS', k('active'))) do
  local h = redis.call('HMGET', k('job', id), 'status', 'record', 'interrupted')
  if h[1] == 'running' and not h[3] then
    local owner = cjson.decode(h[2])['owner']
    if A[1] == '1' or (type(owner) == 'string' and owner == A[2]) then
      redis.call('HSET', k('job', id), 'interrupted', A[3])
      count = count + 1
    end
  end
end
return count
