-- lib_rate.lua: the sliding-log limiter's local functions (see jobctl/ratelimit.py for the guarantee).
-- KEYS: none. ARGV: none. Times are Lua numbers in microseconds.
local function jobctl_now_us(arg)
  if arg ~= nil and arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function jobctl_throttle_wait_us(key)
  return math.max(0, redis.call('PTTL', key)) * 1000
end

local function jobctl_rate_wait_us(key, limit, window_us, now)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%.0f', now - window_us))
  local n = redis.call('ZCARD', key)
  if n < limit then return 0 end
  -- the start whose expiry brings the count back under the limit
  local e = redis.call('ZRANGE', key, n - limit, n - limit, 'WITHSCORES')
  return math.max(1, tonumber(e[2]) + window_us - now)
end

local function jobctl_rate_take(key, window_us, now, member)
  local at = string.format('%.0f', now)
  if member == nil or member == '' then member = at .. '-' .. redis.call('ZCARD', key) end
  local old = redis.call('ZSCORE', key, member)
  if old then  -- a reused token must not move an earlier start: keep that one under an alias
    local alias, i = member .. '#' .. old, 0
    while redis.call('ZSCORE', key, alias) do i = i + 1; alias = member .. '#' .. old .. '#' .. i end
    redis.call('ZADD', key, old, alias)
  end
  redis.call('ZADD', key, at, member)
  local newest = tonumber(redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2])
  redis.call('PEXPIRE', key, math.ceil((math.max(newest, now) - now + window_us) / 1000))
end
