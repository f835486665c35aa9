//! The Lua scripts the Redis store runs: each one atomic step on Redis' side.

/// GCRA on Redis' clock. KEYS[1]: the key; ARGV: interval (µs), burst. Returns 0 when allowed,
/// else the wait in µs.
pub(super) const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new = tat + interval
local allow_at = new - burst * interval
if allow_at > now then return math.ceil(allow_at - now) end
redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', math.ceil((new - now) / 1000) + 1)
return 0
";

/// Record a revocation and publish it. KEYS: tokens zset, user-cutoff hash, user-keep zset.
/// ARGV: kind (t|u), member, value (expiry s | cutoff ms), keep-until s, now s, channel, message.
pub(super) const REVOKE: &str = r"
local now = tonumber(ARGV[5])
if ARGV[1] == 't' then
  redis.call('ZADD', KEYS[1], 'GT', ARGV[3], ARGV[2])
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  if top[2] then redis.call('EXPIREAT', KEYS[1], math.floor(tonumber(top[2])) + 1) end
else
  local old = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '-1')
  if tonumber(ARGV[3]) > old then redis.call('HSET', KEYS[2], ARGV[2], ARGV[3]) end
  redis.call('ZADD', KEYS[3], 'GT', ARGV[4], ARGV[2])
  local gone = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 1000)
  if #gone > 0 then
    redis.call('HDEL', KEYS[2], unpack(gone))
    redis.call('ZREM', KEYS[3], unpack(gone))
  end
  local top = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
  if top[2] then
    local at = math.floor(tonumber(top[2])) + 1
    redis.call('EXPIREAT', KEYS[2], at)
    redis.call('EXPIREAT', KEYS[3], at)
  end
end
redis.call('PUBLISH', ARGV[6], ARGV[7])
return 1
";

/// Whether a token is revoked. KEYS: tokens zset, user-cutoff hash. ARGV: id, user, issued ms,
/// now s.
pub(super) const CHECK: &str = r"
local e = redis.call('ZSCORE', KEYS[1], ARGV[1])
if e and tonumber(e) > tonumber(ARGV[4]) then return 1 end
local c = redis.call('HGET', KEYS[2], ARGV[2])
if c and tonumber(ARGV[3]) <= tonumber(c) then return 1 end
return 0
";

/// Set a map field; the map lives at least ARGV[3] ms more. KEYS[1]: the hash. ARGV: field,
/// value, ttl ms, most fields. Returns 0, or -1 when the map is full.
pub(super) const MAP_PUT: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then
  return -1
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local left = redis.call('PTTL', KEYS[1])
if left < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 0
";
