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
-- Returns {moved, seconds until the next job is due or '-1', {refused...}, {broken...}}: refused =
--   {id, level, queue, reason} of due ids with no job hash, a key of another type or a status RQ does not
--   know, left in the scheduled registry for the caller to dead-letter (jobctl.delayed); broken = {key,
--   type} of scheduled registries of the wrong type, skipped. Ids whose status says RQ keeps the job
--   elsewhere (queued, started, finished, canceled, ...) are stale copies and dropped.
local jp, qp, sp, mkp = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local sec, usec = jc_now()
local now = sec + usec / 1000000
local moved, next_due, refused, broken = 0, -1, {}, {}
local elsewhere = {queued = true, started = true, finished = true, failed = true, stopped = true, canceled = true,
                   deferred = true, rate_limited = true, ready_to_enqueue = true}
redis.call('SET', ARGV[5], tostring(now), 'EX', 30)
for _, pair in ipairs(cjson.decode(ARGV[7])) do
  local queue, level = pair[1], pair[2]
  local sk = sp .. level
  local ids = redis.pcall('ZRANGEBYSCORE', sk, '-inf', now, 'LIMIT', 0, tonumber(ARGV[6]))
  if ids.err then
    if not string.find(ids.err, 'WRONGTYPE', 1, true) then error(ids) end
    broken[#broken + 1] = {sk, redis.call('TYPE', sk).ok}
    ids = {}
  end
  local pushed = 0
  for _, id in ipairs(ids) do
    local st = redis.pcall('HGET', jp .. id, 'status')
    if type(st) == 'table' then
      refused[#refused + 1] = {id, level, queue, 'job key is a ' .. redis.call('TYPE', jp .. id).ok .. ', not a hash'}
    elseif st == false then
      refused[#refused + 1] = {id, level, queue, 'job hash missing (deleted or expired while scheduled)'}
    elseif st == 'scheduled' then
      local r = redis.pcall('RPUSH', qp .. level, id)
      if type(r) == 'table' then  -- the queue list is of the wrong type: the job waits in the registry
        broken[#broken + 1] = {qp .. level, redis.call('TYPE', qp .. level).ok}
        break
      end
      redis.call('ZREM', sk, id)
      redis.call('HSET', jp .. id, 'status', 'queued')
      moved, pushed = moved + 1, pushed + 1
    elseif elsewhere[st] then
      redis.call('ZREM', sk, id)
    else
      refused[#refused + 1] = {id, level, queue, 'job status is ' .. string.sub(st, 1, 40) ..
                               ' (not a status RQ knows) while scheduled'}
    end
  end
  if pushed > 0 then redis.pcall('ZADD', mkp .. queue, 0, 'm') end
  local first = #broken > 0 and broken[#broken][1] == sk and {} or redis.call('ZRANGE', sk, 0, 0, 'WITHSCORES')
  if first[2] and (next_due < 0 or tonumber(first[2]) < next_due) then next_due = tonumber(first[2]) end
end
if next_due >= 0 then next_due = next_due - now end
return {moved, tostring(next_due), refused, broken}
