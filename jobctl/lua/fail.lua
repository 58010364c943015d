-- fail.lua: apply a failure decision to a started job: retry (now or later), dead-letter, or put back.
-- KEYS: none (keys from the prefixes below; the job's level is an argument, so a cluster port could
--   pass them in KEYS). Keys touched: the job hash, its queue list, started, scheduled and failed
--   registries, the owner's active hash, per-minute metrics and the queue's wake-up marker.
-- ARGV[1] job_prefix: prefix of job hashes
-- ARGV[2] queue_prefix: prefix of queue lists
-- ARGV[3] wip_prefix: prefix of started registries
-- ARGV[4] scheduled_prefix: prefix of scheduled registries
-- ARGV[5] failed_prefix: prefix of failed registries
-- ARGV[6] active_key: the owner's running jobs
-- ARGV[7] metrics_prefix: prefix of per-minute counters
-- ARGV[8] marker_prefix: prefix of wake-up markers
-- ARGV[9] job_id: the job
-- ARGV[10] member: its started-registry member (id:execution, or a bare id RQ wrote)
-- ARGV[11] level: its priority level
-- ARGV[12] queue: its queue
-- ARGV[13] action: 'retry', 'dead' or 'requeue' (put back at the head, no attempt charged)
-- ARGV[14] delay_s: retry delay (0: at once, at the tail)
-- ARGV[15] consumes_attempt: '1' or '0'
-- ARGV[16] error: the error text stored on the job
-- ARGV[17] traceback: '' for none
-- ARGV[18] owner: the runner that must still own it; '' = anyone, once its lease expired
-- ARGV[19] rq_margin_s: the margin the started-registry score carries beyond the lease
-- ARGV[20] failure_ttl_s: how long RQ's failed registry keeps it (until the store has it)
-- ARGV[21] metrics_ttl_s: expiry of per-minute counters
-- ARGV[22] retry_later_streak: '1' when this failure was a RetryLater
-- ARGV[23] results_prefix: prefix of RQ's result streams (rq:results:)
-- ARGV[24] exc_string: base64 of the zlib-compressed error and traceback, for RQ's result stream
-- ARGV[25] rq_worker_key: the owner pool's RQ worker hash ('' = none)
-- LIBS: lib_time
-- Returns 1 when applied, 0 when someone else already handled the job, 2 when a retry or requeue could
--   not put the job back (its queue list or scheduled registry holds another type): it failed instead,
--   its error saying why, so it is dead-lettered rather than left in no list. A registry, marker or
--   counter of the wrong type is skipped (redis.pcall), so the job's own record is still written.
local jp, qp, wp, sp, fp = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local active, mp, mkp = ARGV[6], ARGV[7], ARGV[8]
local id, member, level, queue, action = ARGV[9], ARGV[10], ARGV[11], ARGV[12], ARGV[13]
local jk = jp .. id
local function try(...)  -- redis.call that skips a key of the wrong type (the step reports such keys)
  local r = redis.pcall(...)
  if type(r) == 'table' and r.err and not string.find(r.err, 'WRONGTYPE', 1, true) then error(r) end
  return r
end
local function place(...)  -- put the job back: false when the key holds another type
  local r = try(...)
  return not (type(r) == 'table' and r.err)
end
local unplaced = false  -- the key a retry or requeue could not put the job back into
local sec, usec = jc_now()
local now = sec + usec / 1000000
local now_iso = jc_iso(sec, usec)
local score = try('ZSCORE', wp .. level, member)
if type(score) == 'table' then score = '+inf' end  -- started registry of the wrong type: the owner decides
if not score then
  redis.call('HDEL', active, id)
  return 0
end
local h = redis.pcall('HMGET', jk, 'worker_name', 'status')
if not jc_is_hash_reply(h) then h = {false, false} end
if ARGV[18] == '' then
  if tonumber(score) - tonumber(ARGV[19]) > now then return 0 end
elseif h[1] ~= ARGV[18] then
  redis.call('HDEL', active, id)
  return 0
end
try('ZREM', wp .. level, member)
redis.call('HDEL', active, id)
if h[2] == false or h[2] == 'canceled' then return 0 end  -- deleted, replaced or cancelled meanwhile
local attempt = jc_count(redis.call('HGET', jk, 'jc_attempt')) or 1
if ARGV[15] == '0' then attempt = math.max(0, attempt - 1) end
redis.call('HSET', jk, 'jc_rl', ARGV[22], 'jc_attempt', attempt)
local mk = mp .. queue .. ':' .. math.floor(now / 60)
if action == 'requeue' then
  if place('LPUSH', qp .. level, id) then
    redis.call('HSET', jk, 'status', 'queued')
    try('ZADD', mkp .. queue, 0, 'm')
    return 1
  end
  unplaced, action = qp .. level, 'dead'
end
if action == 'retry' then
  local delay = tonumber(ARGV[14])
  if delay > 0 and place('ZADD', sp .. level, now + delay, id) then
    redis.call('HSET', jk, 'status', 'scheduled')
  elseif delay <= 0 and place('RPUSH', qp .. level, id) then
    redis.call('HSET', jk, 'status', 'queued')
    try('ZADD', mkp .. queue, 0, 'm')
  else
    unplaced, action = (delay > 0 and sp or qp) .. level, 'dead'
  end
end
local err = ARGV[16]
if unplaced then
  err = err .. ' (it could not be queued again: Redis key ' .. unplaced .. ' holds a ' ..
    redis.call('TYPE', unplaced).ok .. ')'
end
redis.call('HSET', jk, 'exc_info', err, 'jc_error', err, 'ended_at', now_iso)
redis.call('HSETNX', jk, 'jc_first_failed', now_iso)
if ARGV[17] ~= '' then redis.call('HSET', jk, 'jc_traceback', ARGV[17]) end
if action == 'retry' then
  try('HINCRBY', mk, 'retried', 1)
else
  redis.call('HSET', jk, 'status', 'failed')
  redis.call('PERSIST', jk)
  try('ZADD', fp .. level, now + tonumber(ARGV[20]), id)
  try('HINCRBY', mk, 'failed', 1)
  try('XADD', ARGV[23] .. id, 'MAXLEN', '~', 10, '*', 'type', 2, 'worker_name', h[1] or '',
             'exc_string', ARGV[24], 'execution_id', string.match(member, ':(.*)$') or '')
  if ARGV[25] ~= '' and redis.call('EXISTS', ARGV[25]) == 1 then
    redis.call('HINCRBY', ARGV[25], 'failed_job_count', 1)
  end
end
redis.call('EXPIRE', mk, tonumber(ARGV[21]))
return unplaced and 2 or 1
