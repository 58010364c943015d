-- heartbeat.lua: extend the leases of running jobs (only those still in the started registry).
-- KEYS: none (keys from the prefix below). Keys touched: started registries.
-- ARGV[1] wip_prefix: prefix of started registries
-- ARGV[2] lease_s: seconds from now the leases last
-- ARGV[3] rq_margin_s: margin added to the score for RQ's cleanup
-- ARGV[4] members: JSON [[level, member], ...]
-- LIBS: lib_time
-- Returns how many leases were extended.
local sec, usec = jc_now()
local score = sec + usec / 1000000 + tonumber(ARGV[2]) + tonumber(ARGV[3])
local n = 0
for _, pair in ipairs(cjson.decode(ARGV[4])) do
  local r = redis.pcall('ZADD', ARGV[1] .. pair[1], 'XX', 'CH', score, pair[2])
  if type(r) == 'number' then n = n + r end  -- a registry of the wrong type is skipped
end
return n
