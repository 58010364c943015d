-- time.lua: the server clock as the runtime formats it (used by tests of lib_time).
-- KEYS: none.
-- ARGV[1] seconds: unix seconds to format ('' = now)
-- ARGV[2] micros: microseconds to format
-- LIBS: lib_time
-- Returns {seconds, micros, iso}.
local s, us = jc_now()
if ARGV[1] ~= '' then s, us = tonumber(ARGV[1]), tonumber(ARGV[2]) end
return {s, us, jc_iso(s, us)}
