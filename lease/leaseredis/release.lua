-- Frees one lease's slot and counts how it ended.
--
-- KEYS[1] slots of every user   KEYS[2] slots of this user
-- KEYS[3] this user's usage counters
-- ARGV[1] lease ID
-- ARGV[2] "issued": the lease was issued and has ended;
--         "failed": its create failed (it is no longer counted as acquired);
--         "denied": the rate limit refused it after the caps admitted it
-- ARGV[3] usage retention, s

local held = redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[2] == 'issued' then
  redis.call('HINCRBY', KEYS[3], 'released', 1)
elseif held == 1 then
  redis.call('HINCRBY', KEYS[3], 'acquired', -1)
  if ARGV[2] == 'denied' then
    redis.call('HINCRBY', KEYS[3], 'denied', 1)
  end
end
redis.call('EXPIRE', KEYS[3], ARGV[3])
return held
