-- cancel.lua: cancel a waiting or delayed job so it never runs.
-- KEYS[1] job: the job hash
-- ARGV[1] queue_prefix: prefix of queue lists
-- ARGV[2] scheduled_prefix: prefix of scheduled registries
-- ARGV[3] canceled_prefix: prefix of canceled registries
-- ARGV[4] job_prefix: prefix of job hashes (to recover the id from KEYS[1])
-- LIBS: lib_time
-- Returns the status before ('started' etc. when it could not be cancelled), or '' if no such job.
local status = redis.pcall('HGET', KEYS[1], 'status')
if type(status) ~= 'string' then return '' end
if status ~= 'queued' and status ~= 'scheduled' then return status end
local level = redis.call('HGET', KEYS[1], 'origin') or ''
local id = string.sub(KEYS[1], string.len(ARGV[4]) + 1)
local sec, usec = jc_now()
redis.call('LREM', ARGV[1] .. level, 1, id)
redis.call('ZREM', ARGV[2] .. level, id)
redis.call('HSET', KEYS[1], 'status', 'canceled', 'ended_at', jc_iso(sec, usec))
redis.call('EXPIRE', KEYS[1], 86400)  -- kept a day for `jobs show`, then gone with its registry entry
redis.call('ZADD', ARGV[3] .. level, sec + 86400, id)
redis.call('ZREMRANGEBYSCORE', ARGV[3] .. level, '-inf', sec)
return status
