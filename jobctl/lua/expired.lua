-- expired.lua: started-registry members whose lease expired (their pool stopped heart-beating).
-- KEYS: none (keys from the prefix below). Reads only: started registries.
-- ARGV[1] wip_prefix: prefix of started registries
-- ARGV[2] rq_margin_s: the margin the score carries beyond the lease
-- ARGV[3] levels: JSON [level, ...]
-- LIBS: lib_time
-- Returns {level, member, level, member, ...}, at most 100 per level; a registry of the wrong type is skipped.
local sec, usec = jc_now()
local cut = sec + usec / 1000000 + tonumber(ARGV[2])
local out = {}
for _, level in ipairs(cjson.decode(ARGV[3])) do
  local members = redis.pcall('ZRANGEBYSCORE', ARGV[1] .. level, '-inf', cut, 'LIMIT', 0, 100)
  if members.err then members = {} end  -- a registry of the wrong type holds no lease (the step reports it)
  for _, m in ipairs(members) do
    out[#out + 1] = level
    out[#out + 1] = m
  end
end
return out
