-- One user's usage counters and live slots.
--
-- KEYS[1] slots of this user   KEYS[2] this user's usage counters
-- Returns {acquired, denied, released, live}.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local c = redis.call('HMGET', KEYS[2], 'acquired', 'denied', 'released')
return {
  tonumber(c[1]) or 0,
  tonumber(c[2]) or 0,
  tonumber(c[3]) or 0,
  redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf'),
}
