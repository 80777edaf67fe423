-- Decides the lease caps for one Acquire and, if they admit it, holds its
-- slot. Runs in the same transaction as redis_rate's GCRA script.
--
-- KEYS[1] slots of every user (sorted set: lease ID -> deadline, ms)
-- KEYS[2] slots of this user (the same)
-- KEYS[3] this user's usage counters (hash)
-- ARGV[1] lease ID            ARGV[2] hold, ms
-- ARGV[3] total cap           ARGV[4] per-user cap
-- ARGV[5] lease TTL, ms (the longest a cap refusal asks to wait)
-- ARGV[6] usage retention, s
-- ARGV[7] "1" when the same admission runs again (redis_rate resent its
--         script): a refusal was counted the first time
--
-- Returns {1, 0, 0} when admitted, {0, 1, wait_ms} when the total cap
-- refuses, {0, 2, wait_ms} when the per-user cap refuses.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local hold = tonumber(ARGV[2])
local ttl = tonumber(ARGV[5])

-- Slots whose deadline passed free themselves (a replica killed).
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)

-- Held already: the transaction ran before and was sent again (redis_rate
-- retries with the script's source when Redis did not know it).
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  return {1, 0, 0}
end

local function refuse(which, key)
  if ARGV[7] ~= '1' then
    redis.call('HINCRBY', KEYS[3], 'denied', 1)
    redis.call('EXPIRE', KEYS[3], ARGV[6])
  end
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  local wait = ttl
  if first[2] then
    wait = math.min(ttl, tonumber(first[2]) - now)
  end
  return {0, which, math.max(wait, 1)}
end

if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return refuse(1, KEYS[1])
end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then
  return refuse(2, KEYS[2])
end

local deadline = now + hold
for i = 1, 2 do
  redis.call('ZADD', KEYS[i], deadline, ARGV[1])
  if redis.call('PTTL', KEYS[i]) < hold then
    redis.call('PEXPIRE', KEYS[i], hold)
  end
end
redis.call('HINCRBY', KEYS[3], 'acquired', 1)
redis.call('EXPIRE', KEYS[3], ARGV[6])
return {1, 0, 0}
