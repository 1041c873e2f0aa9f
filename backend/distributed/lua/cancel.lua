-- A: id. Reply: {state, trimmed} (state as it is now), or nil if unknown.
local id = A[1]
local status = redis.call('HGET', k('job', id), 'status')
if not status then return false end
if not final(status) then
  settle(id, 'cancelled', '', '')
  redis.call('PUBLISH', k('cancel'), id)  -- the owning worker stops it (renew() tells it too)
end
return {state(id), TRIMMED}
