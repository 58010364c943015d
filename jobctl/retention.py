"""Retention of completed jobs: kept `keep_completed_s` and at most the newest
`keep_completed_count` per priority level (BullMQ's removeOnComplete {age, count}).

The finish step trims as it goes; `trim_finished` applies the policy to what is already there
(after a policy change, or to jobs finished by plain RQ workers)."""

from __future__ import annotations

from jobctl import keys
from jobctl.runtime import Runtime

MAX_BATCHES = 10  # per level and call: a large backlog is trimmed over a few calls

TRIM = """
local fk, jp, now, keep_n = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local removed = 0
-- delete a hash only while it is still that finished job (an id may be reused by a new job)
local function drop(id) if redis.call('HGET', jp .. id, 'status') == 'finished' then redis.call('DEL', jp .. id) end end
local expired = redis.call('ZRANGEBYSCORE', fk, '-inf', now, 'LIMIT', 0, 1000)
for _, id in ipairs(expired) do drop(id) end
if #expired > 0 then redis.call('ZREM', fk, unpack(expired)) end
removed = #expired
local excess = redis.call('ZCARD', fk) - keep_n
if excess > 0 then
  local old = redis.call('ZRANGE', fk, 0, math.min(excess, 1000) - 1)
  for _, id in ipairs(old) do drop(id) end
  redis.call('ZREM', fk, unpack(old))
  removed = removed + #old
end
return removed
"""


def trim_finished(rt: Runtime) -> int:
    """Apply every queue's completed-job retention now; returns how many jobs were removed."""
    script = rt.redis.register_script(TRIM)
    secs, micros = rt.redis.time()
    now = secs + micros / 1e6
    removed = 0
    for policy in rt.settings.queues.policies:
        for _p, level in policy.levels():
            for _batch in range(MAX_BATCHES):  # 1000 per call keeps each script short
                n = int(script(keys=[keys.finished(level)], args=[keys.job(""), now, policy.keep_completed_count]))
                removed += n
                if n < 1000:
                    break
    return removed
