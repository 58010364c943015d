-- rate_acquire.lua: take one start in a limiter log if the limit allows it.
-- KEYS[1] rate: the scope's log
-- ARGV[1] limit: starts allowed per window
-- ARGV[2] window_us: the window
-- ARGV[3] now_us: '' = server time
-- ARGV[4] member: '' = anonymous
-- LIBS: lib_rate
-- Returns {µs to wait (0: taken), the decision's time in µs}.
local limit, window_us = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = jobctl_now_us(ARGV[3])
local wait = jobctl_rate_wait_us(KEYS[1], limit, window_us, now)
if wait == 0 then jobctl_rate_take(KEYS[1], window_us, now, ARGV[4]) end
return {wait, now}
