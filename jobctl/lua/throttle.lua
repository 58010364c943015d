-- throttle.lua: pause starts on a queue (HTTP 429), keeping the later of the current and the new expiry.
-- KEYS[1] throttle: the queue's throttle
-- ARGV[1] ms: how long
local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < ms then redis.call('SET', KEYS[1], '1', 'PX', ms) end
