-- step.lua: finish a batch of succeeded jobs, then take up to N jobs; one atomic, idempotent call.
-- KEYS: none. The jobs taken are only known inside the script, so their keys are built here from
--   the prefixes below (this script cannot run on Redis Cluster). Keys touched: job hashes, queue
--   lists, started (wip), finished and failed registries, the runner's active hash and step record,
--   the paused set, RQ's suspension flag, per-minute metrics, duration histograms, wake-up markers,
--   limiter logs, throttles.
-- ARGV[1] job_prefix: prefix of job hashes (rq:job:)
-- ARGV[2] queue_prefix: prefix of queue lists (rq:queue:)
-- ARGV[3] wip_prefix: prefix of started registries (rq:wip:)
-- ARGV[4] finished_prefix: prefix of finished registries (rq:finished:)
-- ARGV[5] failed_prefix: prefix of failed registries (rq:failed:)
-- ARGV[6] active_key: the runner's running jobs (jobctl:active:{runner})
-- ARGV[7] step_key: the runner's last step, replayed when a reply was lost (jobctl:step:{runner})
-- ARGV[8] paused_key: set of paused queue names
-- ARGV[9] suspended_key: RQ's suspension flag (rq suspend)
-- ARGV[10] metrics_prefix: prefix of per-minute counters (jobctl:metrics:)
-- ARGV[11] marker_prefix: prefix of wake-up markers (jobctl:marker:)
-- ARGV[12] rate_prefix: prefix of limiter logs (jobctl:rate:)
-- ARGV[13] throttle_prefix: prefix of queue throttles (jobctl:throttle:)
-- ARGV[14] worker: the runner's name, written as the jobs' worker_name
-- ARGV[15] token: this step's token, unique in the runner's life; a call with the last token replays
-- ARGV[16] lease_s: seconds a taken job's lease lasts without a heartbeat
-- ARGV[17] rq_margin_s: added to the started-registry score, so RQ's cleanup only sees long-dead leases
-- ARGV[18] metrics_ttl_s: expiry of per-minute counters
-- ARGV[19] finishes: JSON [[id, execution, level, queue, result, duration_ms, keep_s, keep_count,
--   return_value (base64 of the result's JSON, for RQ's result stream), job name], ...]
-- ARGV[20] takes: JSON {"n": most jobs to take, "q": {queue: [free slots, global cap, rate limit,
--   window_us, scope, [every level of the queue], [levels whose started registry took a member in this
--   runner's life]]}, "levels": [[queue, level], ...] best first}; "" = take nothing. A level's first take
--   in a step adds its member before the pop unless the level is in that last list, so a started registry
--   of the wrong type leaves the job queued; on a listed level it only costs that registry's entries.
-- ARGV[21] failure_ttl_s: how long RQ's failed registry keeps a refused job (until the store has it)
-- ARGV[22] results_prefix: prefix of RQ's result streams (rq:results:)
-- ARGV[23] rq_worker_key: the pool's RQ worker hash, whose job counts RQ's tools show ('' = none)
-- ARGV[24] requeued_key: list of "dead-letter id|job id" requeued by RQ's tools, settled by reconcile
-- ARGV[25] durations_prefix: prefix of the never-resetting duration histograms (jobctl:durations:)
-- ARGV[26] durations_ttl_s: expiry of a histogram after its last write
-- ARGV[27] duration_buckets: n, the finite bucket bounds 2^0..2^(n-1) ms; bucket i counts durations in
--   (2^(i-1), 2^i] ms (bucket 0: <= 1 ms), bucket n the rest (+Inf); fields d{i} of the per-minute
--   counters and {job}|d{i} (with {job}|ms, the sum) of the histogram
-- LIBS: lib_time, lib_rate
-- Returns {{skipped...}, wait_us, flags, {taken...}, {refused...}, {broken...}}: skipped = ids of finishes not
--   recorded (the job was cancelled, deleted or taken over meanwhile); taken =
--   {id, execution, level, queue, attempt, data, max_attempts, retry_later_streak, timeout_s, bad};
--   refused = {id, level, queue, reason} (no job hash to mark: recorded only in the dead-letter store);
--   flags: 'replayed', 'suspended' or ''; broken = {key, type} of each key of the wrong type met (a
--   queue list that is a string, ...): left alone and reported, its level skipped, the step goes on.
--   Level keys are read with redis.pcall, so a wrong-type key costs nothing until it is met.
local jp, qp, wp, fp, xp = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local active, step_key = ARGV[6], ARGV[7]
local mp, mkp, rp, tp = ARGV[10], ARGV[11], ARGV[12], ARGV[13]
local worker, token = ARGV[14], ARGV[15]
local lease, margin, mttl = tonumber(ARGV[16]), tonumber(ARGV[17]), tonumber(ARGV[18])

local broken, seen = {}, {}
local function try(cmd, key, ...)  -- redis.call, but a key of the wrong type is reported, not fatal
  local r = redis.pcall(cmd, key, ...)
  if type(r) == 'table' and r.err then
    if not string.find(r.err, 'WRONGTYPE', 1, true) then error(r) end
    if not seen[key] then
      seen[key] = true
      broken[#broken + 1] = {key, redis.call('TYPE', key).ok}
    end
    return nil, true
  end
  return r, false
end

local last = redis.call('GET', step_key)
if last and string.sub(last, 1, #token + 1) == token .. '|' then
  -- the reply to this very step was lost: say again what it did, do nothing twice
  local rec = cjson.decode(string.sub(last, #token + 2))
  local taken = {}
  for _, t in ipairs(rec.taken) do
    local f = redis.call('HMGET', jp .. t[1], 'data', 'jc_max', 'jc_rl', 'timeout')
    taken[#taken + 1] = {t[1], t[2], t[3], t[4], t[5], f[1] or '', f[2] or '', f[3] or '0', f[4] or '', t[6]}
  end
  return {rec.skipped, '0', 'replayed', taken, rec.refused}
end

local sec, usec = jc_now()
local now = sec + usec / 1000000
local now_iso = jc_iso(sec, usec)
local minute = math.floor(now / 60)

-- finish ------------------------------------------------------------------------------------
local skipped = {}
local per_queue, fin_levels, per_job = {}, {}, {}
local nb = tonumber(ARGV[27])
local function bucket(ms)  -- exact at the bounds: frexp splits ms into m * 2^e, 0.5 <= m < 1
  if ms <= 1 then return 0 end
  local m, e = math.frexp(ms)
  if m == 0.5 then e = e - 1 end
  return math.min(e, nb)
end
for _, f in ipairs(cjson.decode(ARGV[19])) do
  local id, exec, level, queue, result, ms, keep_s, keep_n = f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8]
  local jk, rk = jp .. id, ARGV[22] .. id
  redis.call('HDEL', active, id)  -- our own bookkeeping goes whatever became of the job
  local h = redis.pcall('HMGET', jk, 'worker_name', 'status', 'jc_exec')
  if not jc_is_hash_reply(h) then h = {false, false, false} end
  if h[3] == exec or h[3] == false then try('ZREM', wp .. level, id .. ':' .. exec) end
  if h[1] == worker and h[2] == 'started' and h[3] == exec then  -- not cancelled, deleted or retaken
    redis.call('HSET', jk, 'status', 'finished', 'ended_at', now_iso, 'result', result)
    if keep_s > 0 and keep_n > 0 then
      redis.call('EXPIRE', jk, keep_s)
      if not select(2, try('ZADD', fp .. level, now + keep_s, id)) then fin_levels[level] = keep_n end
      try('XADD', rk, 'MAXLEN', '~', 10, '*', 'type', 1, 'worker_name', worker, 'return_value', f[9],
                 'execution_id', exec)
      redis.call('EXPIRE', rk, keep_s)
    else
      redis.call('DEL', jk, rk)
    end
    local b = bucket(ms)
    local q = per_queue[queue] or {0, 0, {}}
    q[1], q[2] = q[1] + 1, q[2] + ms
    q[3][b] = (q[3][b] or 0) + 1
    per_queue[queue] = q
    local jobs = per_job[queue] or {}
    local name = f[10] or '?'
    local j = jobs[name] or {0, {}}
    j[1] = j[1] + ms
    j[2][b] = (j[2][b] or 0) + 1
    jobs[name] = j
    per_job[queue] = jobs
  else
    skipped[#skipped + 1] = id
  end
end
local total_n, total_ms = 0, 0
for queue, q in pairs(per_queue) do
  total_n, total_ms = total_n + q[1], total_ms + q[2]
  local mk = mp .. queue .. ':' .. minute
  if not select(2, try('HINCRBY', mk, 'completed', q[1])) then
    redis.call('HINCRBYFLOAT', mk, 'ms', q[2])
    for b, n in pairs(q[3]) do redis.call('HINCRBY', mk, 'd' .. b, n) end
  end
  redis.call('EXPIRE', mk, mttl)
  local dk = ARGV[25] .. queue
  for name, j in pairs(per_job[queue]) do
    if not select(2, try('HINCRBYFLOAT', dk, name .. '|ms', j[1])) then
      for b, n in pairs(j[2]) do redis.call('HINCRBY', dk, name .. '|d' .. b, n) end
    end
  end
  redis.call('EXPIRE', dk, tonumber(ARGV[26]))
end
if total_n > 0 and ARGV[23] ~= '' and redis.call('EXISTS', ARGV[23]) == 1
   and not select(2, try('HINCRBY', ARGV[23], 'successful_job_count', total_n)) then
  redis.call('HINCRBYFLOAT', ARGV[23], 'total_working_time', total_ms / 1000)
end
for level, keep_n in pairs(fin_levels) do  -- retention, once per level and step
  local fk = fp .. level
  redis.call('ZREMRANGEBYSCORE', fk, '-inf', now)
  local excess = redis.call('ZCARD', fk) - keep_n
  if excess > 0 then
    local old = redis.call('ZRANGE', fk, 0, math.min(excess, 1000) - 1)
    for _, oid in ipairs(old) do  -- only while still that finished job (ids can be reused)
      if redis.pcall('HGET', jp .. oid, 'status') == 'finished' then redis.call('DEL', jp .. oid) end
    end
    redis.call('ZREM', fk, unpack(old))
  end
end

-- take --------------------------------------------------------------------------------------
local taken, refused, record, flags = {}, {}, {}, ''
local min_wait = 0
local function note_wait(w) if min_wait == 0 or w < min_wait then min_wait = w end end

-- statuses under which RQ (or jobctl) keeps the job somewhere else: a queued copy is stale, dropped
local rq_elsewhere = {started = true, finished = true, failed = true, stopped = true, canceled = true,
                      deferred = true, scheduled = true, rate_limited = true, ready_to_enqueue = true}

local function bad_fields(f)
  for i, name in ipairs({'jc_max', 'jc_attempt', 'timeout'}) do
    if jc_count(f[i + 3]) == false then return 'garbage in field ' .. name .. ': ' .. string.sub(f[i + 3], 1, 40) end
  end
  return ''
end

if ARGV[20] ~= '' then
  local spec = cjson.decode(ARGV[20])
  local budget = tonumber(spec.n)
  if redis.call('EXISTS', ARGV[9]) == 1 then budget = 0; flags = 'suspended' end
  local state = {}  -- queue -> {free, blocked, running (global cap)}
  local wip_adds, act, more = {}, {}, {}
  local now_us = sec * 1000000 + usec
  for _, pair in ipairs(spec.levels) do
    if budget <= 0 then break end
    local queue, level = pair[1], pair[2]
    local q = spec.q[queue]
    local st = state[queue]
    if st == nil then
      local paused, unreadable = try('SISMEMBER', ARGV[8], queue)  -- a paused set of the wrong type:
      st = {free = tonumber(q[1]), blocked = unreadable or paused == 1, running = -1,  -- nothing is taken
            throttle = math.max(0, redis.call('PTTL', tp .. queue)) * 1000, ok = {}}
      for _, l in ipairs(q[7] or {}) do st.ok[l] = true end
      state[queue] = st
    end
    local cap, limit, window, scope = tonumber(q[2]), tonumber(q[3]), tonumber(q[4]), q[5]
    local qk = qp .. level
    local probed = st.ok[level] == true  -- no need to try the level's started registry before a pop
    while budget > 0 and not st.blocked do
      local id = try('LINDEX', qk, 0)
      if not id then break end
      if st.throttle > 0 then note_wait(st.throttle); break end
      if st.free <= 0 then more[queue] = true; break end
      if cap > 0 then
        if st.running < 0 then
          st.running = 0
          for _, l in ipairs(q[6]) do st.running = st.running + (try('ZCARD', wp .. l) or 0) end
        end
        if st.running >= cap then st.blocked = true; break end
      end
      local jk = jp .. id
      local f = redis.pcall('HMGET', jk, 'status', 'data', 'jc_job', 'jc_max', 'jc_attempt', 'timeout', 'jc_rl')
      if not jc_is_hash_reply(f) then  -- not a hash at all: nothing to mark, only to report
        redis.call('LPOP', qk)
        refused[#refused + 1] = {id, level, queue, 'job key is a ' .. redis.call('TYPE', jk).ok .. ', not a hash'}
      elseif f[1] == false then  -- an id without a job hash: leave a failed record the store picks up
        redis.call('LPOP', qk)
        local why = 'job hash missing (deleted or expired while queued)'
        redis.call('HSET', jk, 'status', 'failed', 'origin', level, 'jc_queue', queue, 'jc_error', why,
                   'exc_info', why, 'ended_at', now_iso, 'created_at', now_iso)
        try('ZADD', xp .. level, now + tonumber(ARGV[21]), id)
        refused[#refused + 1] = {id, level, queue, why}
      elseif f[1] ~= 'queued' and rq_elsewhere[f[1]] then
        redis.call('LPOP', qk)  -- cancelled, or a stale copy of an id already handled: drop it, look further
      else
        local rk = nil
        if limit > 0 then
          rk = rp .. queue
          if scope == 'job' then rk = rk .. ':' .. (f[3] or '') end
          local w = jobctl_rate_wait_us(rk, limit, window, now_us)
          if w > 0 then
            note_wait(w)
            if scope ~= 'job' then st.blocked = true end
            break
          end
        end
        local exec = token .. '-' .. (#taken + 1)
        if not probed then  -- the level's first take adds its member before the pop: a started registry
          probed = true     -- of the wrong type leaves the job queued (the others go in one ZADD below)
          if select(2, try('ZADD', wp .. level, now + lease + margin, id .. ':' .. exec)) then break end
        else
          local adds = wip_adds[level] or {}
          adds[#adds + 1] = now + lease + margin
          adds[#adds + 1] = id .. ':' .. exec
          wip_adds[level] = adds
        end
        redis.call('LPOP', qk)
        if rk then jobctl_rate_take(rk, window, now_us, id) end
        local bad = bad_fields(f)
        if f[1] ~= 'queued' then  -- a status neither RQ nor jobctl writes: dead-lettered with its data
          bad = 'job status is ' .. string.sub(f[1], 1, 40) .. ' (not a status RQ knows) while in a queue'
        end
        local before, most = jc_count(f[5]) or 0, jc_count(f[4])
        if most and before >= most then  -- only an operator's requeue (rq requeue) queues a spent job:
          before = 0                     -- it runs again with a fresh set of attempts
          redis.call('PERSIST', jk)
          local dlq = redis.call('HGET', jk, 'jc_dlq')
          if dlq then  -- its dead letter is settled as replayed by this very job
            redis.call('HDEL', jk, 'jc_dlq')
            redis.call('RPUSH', ARGV[24], dlq .. '|' .. id)
          end
        end
        local attempt = before + 1
        redis.call('HSET', jk, 'status', 'started', 'started_at', now_iso, 'worker_name', worker,
                   'last_heartbeat', now_iso, 'jc_attempt', attempt, 'jc_exec', exec)
        act[#act + 1] = id
        act[#act + 1] = level .. '|' .. now .. '|' .. (f[6] or '') .. '|' .. exec
        taken[#taken + 1] = {id, exec, level, queue, attempt, f[2] or '', f[4] or '', f[7] or '0', f[6] or '', bad}
        record[#record + 1] = {id, exec, level, queue, attempt, bad}
        st.free, budget = st.free - 1, budget - 1
        if st.running >= 0 then st.running = st.running + 1 end
      end
    end
    if budget <= 0 and (try('LLEN', qk) or 0) > 0 then more[queue] = true end
  end
  for level, adds in pairs(wip_adds) do try('ZADD', wp .. level, unpack(adds)) end
  if #act > 0 then redis.call('HSET', active, unpack(act)) end
  for queue, _ in pairs(more) do try('ZADD', mkp .. queue, 0, 'm') end  -- let another runner take
end
redis.call('SET', step_key, token .. '|' .. cjson.encode({skipped = skipped, taken = record, refused = refused}),
           'EX', 86400)
return {skipped, tostring(min_wait), flags, taken, refused, broken}
