"""Lua scripts: each a single atomic step on RQ's data model.

Scores use Redis server time (`TIME`), so hosts with skewed clocks agree on when a delayed job
is due or a heartbeat has expired. Key prefixes come from `jobctl.keys` as arguments.
"""

from __future__ import annotations

from jobctl import ratelimit

# Shared helpers, prepended to scripts that need them.
_PRELUDE = """
local function now_s()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
"""

# ENQUEUE: KEYS[1]=job hash, KEYS[2]=queue list or scheduled zset, KEYS[3]=rq:queues, KEYS[4]=marker
# ARGV[1]=job id, ARGV[2]=mode ('queue'|'schedule'), ARGV[3]=delay_s (schedule) or at_s (absolute)
# ARGV[4]=absolute (0/1), ARGV[5]=queue key (for rq:queues), ARGV[6..]=field/value pairs
ENQUEUE = _PRELUDE + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 'duplicate' end
local fields = {}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('SADD', KEYS[3], ARGV[5])
if ARGV[2] == 'schedule' then
  local due = tonumber(ARGV[3])
  if ARGV[4] == '0' then due = now_s() + due end
  redis.call('HSET', KEYS[1], 'status', 'scheduled')
  redis.call('ZADD', KEYS[2], due, ARGV[1])
  return 'scheduled'
end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[4], 0, 'm')
return 'queued'
"""

# STEP: optionally finish a succeeded job, then optionally take the next one; one round trip.
# KEYS: none fixed (prefixes in ARGV).
# ARGV[1]=job prefix, ARGV[2]=queue-list prefix, ARGV[3]=wip prefix, ARGV[4]=finished prefix,
# ARGV[5]=active hash key, ARGV[6]=paused set key, ARGV[7]=metrics prefix, ARGV[8]=marker prefix
# ARGV[9]=worker name, ARGV[10]=now iso, ARGV[11]=heartbeat ttl s, ARGV[12]=metrics ttl s
# ARGV[13]=finish? ('1'/'0'); when '1': ARGV[14]=id, [15]=level, [16]=queue, [17]=result json,
#   [18]=keep_s, [19]=keep_count, [20]=duration ms
# ARGV[21]=take? ('1'/'0'); then the take arguments described below.
# Returns {finished} | {finished, wait_s (rate-limited)} | {finished, id, level, queue, attempt, data, ...}
STEP = _PRELUDE + ratelimit.LUA_LIBRARY + """
local jp, qp, wp, fp = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local active, paused, mp, mkp = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local worker, now_iso, hb, mttl = ARGV[9], ARGV[10], tonumber(ARGV[11]), tonumber(ARGV[12])
local now = now_s()
local finished = 0
if ARGV[13] == '1' then
  local id, level, queue = ARGV[14], ARGV[15], ARGV[16]
  local jk = jp .. id
  -- only the current owner may finish it: a runner whose job was reclaimed meanwhile must not
  -- touch the new run's entry (check the owner before removing anything)
  if redis.call('HGET', jk, 'worker_name') == worker and redis.call('ZREM', wp .. level, id) == 1 then
    local keep_s, keep_n = tonumber(ARGV[18]), tonumber(ARGV[19])
    redis.call('HDEL', active, id)
    redis.call('HSET', jk, 'status', 'finished', 'ended_at', now_iso, 'result', ARGV[17])
    local fk = fp .. level
    if keep_s > 0 and keep_n > 0 then
      redis.call('EXPIRE', jk, keep_s)
      redis.call('ZADD', fk, now + keep_s, id)
      redis.call('ZREMRANGEBYSCORE', fk, '-inf', now)
      local excess = redis.call('ZCARD', fk) - keep_n
      if excess > 0 then
        local old = redis.call('ZRANGE', fk, 0, excess - 1)
        for _, oid in ipairs(old) do  -- only while still that finished job (ids can be reused)
          if redis.call('HGET', jp .. oid, 'status') == 'finished' then redis.call('DEL', jp .. oid) end
        end
        redis.call('ZREMRANGEBYRANK', fk, 0, excess - 1)
      end
    else
      redis.call('DEL', jk)
    end
    local mk = mp .. queue .. ':' .. math.floor(now / 60)
    redis.call('HINCRBY', mk, 'completed', 1)
    redis.call('HINCRBYFLOAT', mk, 'ms', tonumber(ARGV[20]))
    redis.call('EXPIRE', mk, mttl)
    finished = 1
  end
end
if ARGV[21] ~= '1' then return {finished} end
-- take: ARGV[22]=rate prefix, [23]=throttle prefix, then 5-tuples queue, level, limit, window_us, scope
local rp, tp = ARGV[22], ARGV[23]
local now_us = jobctl_now_us(nil)
local is_paused, blocked, min_wait = {}, {}, 0
local function note_wait(w) if min_wait == 0 or w < min_wait then min_wait = w end end
for i = 24, #ARGV, 5 do
  local queue, level, limit, window, scope = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]),
                                             tonumber(ARGV[i + 3]), ARGV[i + 4]
  if is_paused[queue] == nil then
    is_paused[queue] = redis.call('SISMEMBER', paused, queue) == 1
    local tw = jobctl_throttle_wait_us(tp .. queue)
    if tw > 0 then blocked[queue] = true; note_wait(tw) end
  end
  local qk = qp .. level
  while not is_paused[queue] and not blocked[queue] do
    local id = redis.call('LINDEX', qk, 0)
    if not id then break end
    local jk = jp .. id
    local f = redis.call('HMGET', jk, 'status', 'jc_job', 'data', 'jc_max', 'jc_rl', 'timeout')
    if f[1] ~= 'queued' then
      redis.call('LPOP', qk)  -- a cancelled or deleted job id: drop it and look further
    else
      local rk = nil
      if limit > 0 then
        rk = rp .. queue
        if scope == 'job' then rk = rk .. ':' .. (f[2] or '') end
        local w = jobctl_rate_wait_us(rk, limit, window, now_us)
        if w > 0 then
          note_wait(w)
          if scope ~= 'job' then blocked[queue] = true end
          break
        end
      end
      redis.call('LPOP', qk)
      if rk then jobctl_rate_take(rk, window, now_us, id) end
      redis.call('ZADD', wp .. level, now + hb, id)
      redis.call('HSET', jk, 'status', 'started', 'started_at', now_iso, 'worker_name', worker,
                 'last_heartbeat', now_iso)
      local attempt = redis.call('HINCRBY', jk, 'jc_attempt', 1)
      redis.call('HSET', active, id, level .. '|' .. now .. '|' .. (f[6] or ''))
      if redis.call('LLEN', qk) > 0 then redis.call('ZADD', mkp .. queue, 0, 'm') end
      return {finished, id, level, queue, attempt, f[3] or '', f[4] or '1', f[5] or '0', f[6] or '', ''}
    end
  end
end
return {finished, tostring(min_wait / 1000000)}
"""

# FAIL: apply a failure decision to a started job (guarded: only if still in wip and owned).
# KEYS none. ARGV[1]=job prefix, [2]=queue-list prefix, [3]=wip prefix, [4]=scheduled prefix,
# [5]=failed prefix, [6]=active hash, [7]=metrics prefix, [8]=marker prefix, [9]=id, [10]=level,
# [11]=queue, [12]=action ('retry'|'dead'|'requeue'), [13]=delay_s, [14]=consumes attempt (1/0),
# [15]=error text, [16]=now iso, [17]=owner guard ('' = any whose heartbeat expired; else worker),
# [18]=failure ttl s, [19]=metrics ttl s, [20]=retry-later streak flag, [21]=traceback ('' = none)
FAIL = _PRELUDE + """
local jp, qp, wp, sp, fp = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local active, mp, mkp = ARGV[6], ARGV[7], ARGV[8]
local id, level, queue, action = ARGV[9], ARGV[10], ARGV[11], ARGV[12]
local jk = jp .. id
local now = now_s()
local score = redis.call('ZSCORE', wp .. level, id)
if not score then return 0 end
if ARGV[17] == '' then
  if tonumber(score) > now then return 0 end
elseif redis.call('HGET', jk, 'worker_name') ~= ARGV[17] then
  return 0
end
redis.call('ZREM', wp .. level, id)
redis.call('HDEL', active, id)
if redis.call('EXISTS', jk) == 0 then return 0 end
if ARGV[14] == '0' then redis.call('HINCRBY', jk, 'jc_attempt', -1) end
redis.call('HSET', jk, 'jc_rl', ARGV[20])
local mk = mp .. queue .. ':' .. math.floor(now / 60)
if action == 'requeue' then
  redis.call('HSET', jk, 'status', 'queued')
  redis.call('LPUSH', qp .. level, id)
  redis.call('ZADD', mkp .. queue, 0, 'm')
  return 1
end
redis.call('HSET', jk, 'exc_info', ARGV[15], 'jc_error', ARGV[15], 'ended_at', ARGV[16])
redis.call('HSETNX', jk, 'jc_first_failed', ARGV[16])
if ARGV[21] ~= '' then redis.call('HSET', jk, 'jc_traceback', ARGV[21]) end
if action == 'retry' then
  local delay = tonumber(ARGV[13])
  if delay > 0 then
    redis.call('HSET', jk, 'status', 'scheduled')
    redis.call('ZADD', sp .. level, now + delay, id)
  else
    redis.call('HSET', jk, 'status', 'queued')
    redis.call('RPUSH', qp .. level, id)
    redis.call('ZADD', mkp .. queue, 0, 'm')
  end
  redis.call('HINCRBY', mk, 'retried', 1)
else
  redis.call('HSET', jk, 'status', 'failed')
  redis.call('PERSIST', jk)
  redis.call('ZADD', fp .. level, now + tonumber(ARGV[18]), id)
  redis.call('HINCRBY', mk, 'failed', 1)
end
redis.call('EXPIRE', mk, tonumber(ARGV[19]))
return 1
"""

# PROMOTE: move due delayed jobs to their queue lists. ARGV[1]=job prefix, [2]=queue-list prefix,
# [3]=scheduled prefix, [4]=marker prefix, [5]=heartbeat key, [6]=batch, [7..]=queue,level pairs
PROMOTE = _PRELUDE + """
local jp, qp, sp, mkp = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now = now_s()
local moved = 0
local next_due = -1
redis.call('SET', ARGV[5], tostring(now), 'EX', 30)
for i = 7, #ARGV, 2 do
  local queue, level = ARGV[i], ARGV[i + 1]
  local sk = sp .. level
  local ids = redis.call('ZRANGEBYSCORE', sk, '-inf', now, 'LIMIT', 0, tonumber(ARGV[6]))
  for _, id in ipairs(ids) do
    redis.call('ZREM', sk, id)
    if redis.call('HGET', jp .. id, 'status') == 'scheduled' then
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
"""

# HEARTBEAT: extend the wip deadline of running jobs. ARGV[1]=wip prefix, [2]=ttl, [3..]=level,id pairs
HEARTBEAT = _PRELUDE + """
local deadline = now_s() + tonumber(ARGV[2])
local n = 0
for i = 3, #ARGV, 2 do
  n = n + redis.call('ZADD', ARGV[1] .. ARGV[i], 'XX', 'CH', deadline, ARGV[i + 1])
end
return n
"""

# EXPIRED: ids whose heartbeat deadline passed. ARGV[1]=wip prefix, [2..]=levels. Returns level,id pairs.
EXPIRED = _PRELUDE + """
local now = now_s()
local out = {}
for i = 2, #ARGV do
  local ids = redis.call('ZRANGEBYSCORE', ARGV[1] .. ARGV[i], '-inf', now, 'LIMIT', 0, 100)
  for _, id in ipairs(ids) do out[#out + 1] = ARGV[i]; out[#out + 1] = id end
end
return out
"""

# CANCEL: KEYS[1]=job hash. ARGV[1]=queue-list prefix, [2]=scheduled prefix, [3]=canceled prefix,
# [4]=now iso, [5]=job prefix
# Returns the status before ('started' etc. when it could not be cancelled), or '' if no such job.
CANCEL = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return '' end
if status ~= 'queued' and status ~= 'scheduled' then return status end
local level = redis.call('HGET', KEYS[1], 'origin')
local id = string.sub(KEYS[1], string.len(ARGV[5]) + 1)
redis.call('LREM', ARGV[1] .. level, 1, id)
redis.call('ZREM', ARGV[2] .. level, id)
redis.call('HSET', KEYS[1], 'status', 'canceled', 'ended_at', ARGV[4])
redis.call('EXPIRE', KEYS[1], 86400)  -- kept a day for `jobs show`, then gone with its registry entry
local now = tonumber(redis.call('TIME')[1])
redis.call('ZADD', ARGV[3] .. level, now + 86400, id)
redis.call('ZREMRANGEBYSCORE', ARGV[3] .. level, '-inf', now)
return status
"""
