-- A: worker, info (JSON), capacity, retry_after, models (JSON list).
local key = k('worker', A[1])
redis.call('HSET', key, 'info', A[2], 'capacity', A[3], 'retry_after', A[4], 'models', A[5])
redis.call('PEXPIRE', key, LIVE)
redis.call('ZADD', k('workers'), NOW, A[1])
return 1
