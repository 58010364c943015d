-- lib_time.lua: Redis server time, prepended to scripts that stamp or score anything.
-- KEYS: none. ARGV: none.
-- Every timestamp the runtime writes comes from here, so hosts with skewed clocks agree.

local function jc_now()
  local t = redis.call('TIME')
  return tonumber(t[1]), tonumber(t[2])
end

-- RQ's timestamp format (UTC, microseconds): days to civil date after H. Hinnant's algorithm
local function jc_iso(sec, usec)
  local days = math.floor(sec / 86400)
  local rem = sec - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%06dZ', y, m, d, math.floor(rem / 3600),
                       math.floor((rem % 3600) / 60), rem % 60, usec)
end

-- a hash read with redis.pcall: false when the key held another type (pcall returns {err = ...} then)
local function jc_is_hash_reply(v)
  return type(v) == 'table' and v.err == nil
end

-- a count or limit found in a job hash: nil when absent, false when garbage
local function jc_count(v)
  if v == false or v == nil or v == '' then return nil end
  local n = tonumber(v)
  if n == nil or n ~= math.floor(n) or n < 0 or n > 1e9 then return false end
  return n
end
