-- enqueue.lua: write one job and queue (or schedule) it, unless its id is taken.
-- KEYS[1] job: the job hash
-- KEYS[2] target: the level's queue list, or its scheduled registry
-- KEYS[3] queues: RQ's set of queue keys
-- KEYS[4] marker: the queue's wake-up marker
-- ARGV[1] job_id: the job's id
-- ARGV[2] mode: 'queue' or 'schedule'
-- ARGV[3] seconds: delay from now, or the absolute due time (schedule)
-- ARGV[4] absolute: '1' when seconds is a unix time
-- ARGV[5] queue_key: the level's queue key, for RQ's queue set
-- ARGV[6..] fields: the hash's field/value pairs
-- LIBS: lib_time
-- Returns 'queued', 'scheduled' or 'duplicate'. The target is written first: when it is a key of the
--   wrong type the call fails before anything is written (no job hash left behind, queued in no list);
--   RQ's queue set and the marker are only helpers, skipped when of the wrong type.
if redis.call('EXISTS', KEYS[1]) == 1 then return 'duplicate' end
local mode = 'queued'
if ARGV[2] == 'schedule' then
  local due = tonumber(ARGV[3])
  if ARGV[4] ~= '1' then
    local sec, usec = jc_now()
    due = sec + usec / 1000000 + due
  end
  redis.call('ZADD', KEYS[2], due, ARGV[1])
  mode = 'scheduled'
else
  redis.call('RPUSH', KEYS[2], ARGV[1])
end
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
if mode == 'scheduled' then redis.call('HSET', KEYS[1], 'status', 'scheduled') end
redis.pcall('SADD', KEYS[3], ARGV[5])
if mode == 'queued' then redis.pcall('ZADD', KEYS[4], 0, 'm') end
return mode
