-- promote.lua: move due delayed jobs and retries to their queue lists.
-- KEYS: none (keys from the prefixes below). Keys touched: scheduled registries, job hashes, queue
--   lists, wake-up markers, and the delayed-job mover's heartbeat.
-- ARGV[1] job_prefix: prefix of job hashes
-- ARGV[2] queue_prefix: prefix of queue lists
-- ARGV[3] scheduled_prefix: prefix of scheduled registries
-- ARGV[4] marker_prefix: prefix of wake-up markers
-- ARGV[5] heartbeat_key: set while some process moves delayed jobs
-- ARGV[6] batch: most jobs moved per level and call
-- ARGV[7] levels: JSON [[queue, level], ...]
-- LIBS: lib_time
-- Returns {moved, seconds until the next job is due or '-1'}.
local jp, qp, sp, mkp = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local sec, usec = jc_now()
local now = sec + usec / 1000000
local moved, next_due = 0, -1
redis.call('SET', ARGV[5], tostring(now), 'EX', 30)
for _, pair in ipairs(cjson.decode(ARGV[7])) do
  local queue, level = pair[1], pair[2]
  local sk = sp .. level
  local ids = redis.call('ZRANGEBYSCORE', sk, '-inf', now, 'LIMIT', 0, tonumber(ARGV[6]))
  for _, id in ipairs(ids) do
    redis.call('ZREM', sk, id)
    local st = redis.pcall('HGET', jp .. id, 'status')
    if st == 'scheduled' then
      redis.call('HSET', jp .. id, 'status', 'queued')
      redis.call('RPUSH', qp .. level, id)
      moved = moved + 1
    end
  end
  if #ids > 0 then redis.call('ZADD', mkp .. queue, 0, 'm') end
  local first = redis.call('ZRANGE', sk, 0, 0, 'WITHSCORES')
  if first[2] and (next_due < 0 or tonumber(first[2]) < next_due) then next_due = tonumber(first[2]) end
end
if next_due >= 0 then next_due = next_due - now end
return {moved, tostring(next_due)}
