-- rate_usage.lua: how many starts count in a limiter's current window. Reads only.
-- KEYS[1] rate: the scope's log
-- ARGV[1] window_us: the window
-- ARGV[2] now_us: '' = server time
-- LIBS: lib_rate
local now = jobctl_now_us(ARGV[2])
return redis.call('ZCOUNT', KEYS[1], string.format('(%.0f', now - tonumber(ARGV[1])), '+inf')
