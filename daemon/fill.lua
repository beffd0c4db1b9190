-- pginval_fill: store a value read from PostgreSQL in the cache, unless an
-- invalidation that the read may have missed was applied in the meantime.
-- Shipped with pginval and loaded into each target by `pginval apply`.
--
--   EVALSHA <sha1 of this file> 2 key marker value ttl_ms read_started_at_us [max_age_ms]
--
--   key                 the cache key
--   marker              its invalidation marker, named by the marker rule
--                       (README, "Subscribers: pginval apply"): it is in the
--                       same Redis Cluster hash slot as key
--   value               what to store
--   ttl_ms              its time to live, in milliseconds (> 0)
--   read_started_at_us  when the reader started the read that produced value,
--                       taken BEFORE reading, in microseconds since the Unix
--                       epoch; Redis TIME is the clock to use, since markers
--                       hold Redis time too
--   max_age_ms          optional, default 10000: a read that started longer
--                       ago than this is refused, because the marker of an
--                       invalidation it missed may have expired; keep it at
--                       most [apply] marker_ttl
--
-- Returns 1 if the value was stored, 0 if it was refused: a marker at least
-- as new as the read exists, the read is too old, or the key is already
-- cached (someone else filled it first).
if redis.replicate_commands then redis.replicate_commands() end
local ttl = tonumber(ARGV[2])
local started = tonumber(ARGV[3])
local max_age = tonumber(ARGV[4] or '10000')
if not ttl or ttl <= 0 or not started or not max_age then
  return redis.error_reply('ERR pginval_fill: expected value ttl_ms read_started_at_us [max_age_ms]')
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if now - started > max_age * 1000 then
  return 0
end
local marker = tonumber(redis.call('GET', KEYS[2]) or '')
if marker and marker >= started then
  return 0
end
if redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX') then
  return 1
end
return 0
