-- A: id. Reply: {HGETALL, waiting rank or nil}, or nil if unknown.
return state(A[1])
