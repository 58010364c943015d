-- trim.lua: apply completed-job retention to one finished registry (at most 1000 jobs per call).
-- KEYS[1] finished: the level's finished registry
-- ARGV[1] job_prefix: prefix of job hashes
-- ARGV[2] now: unix seconds
-- ARGV[3] keep_count: how many finished jobs the level keeps
-- Returns how many jobs were removed.
local fk, jp, now, keep_n = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local removed = 0
-- delete a hash only while it is still that finished job (an id may be reused by a new job)
local function drop(id) if redis.pcall('HGET', jp .. id, 'status') == 'finished' then redis.call('DEL', jp .. id) end end
local expired = redis.call('ZRANGEBYSCORE', fk, '-inf', now, 'LIMIT', 0, 1000)
for _, id in ipairs(expired) do drop(id) end
if #expired > 0 then redis.call('ZREM', fk, unpack(expired)) end
removed = #expired
local excess = redis.call('ZCARD', fk) - keep_n
if excess > 0 then
  local old = redis.call('ZRANGE', fk, 0, math.min(excess, 1000) - 1)
  for _, id in ipairs(old) do drop(id) end
  redis.call('ZREM', fk, unpack(old))
  removed = removed + #old
end
return removed
