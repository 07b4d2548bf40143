/**
 * The sliding-window script koa-ratelimit's redis driver runs (async-ratelimiter 1.6.10,
 * `defineCommand.ratelimiter`), with one fix: before adding the request it makes the member new.
 *
 * Why: the sorted set's member is the request's timestamp (milliseconds as a double, ~0.25 µs
 * resolution) and a set keeps one member per value. Two replicas that compute the same timestamp
 * for the same caller are both admitted but counted once, so N replicas can admit more than the
 * limit (2 % of bursts of 200 requests over two replicas did in this repo's exactness test). The
 * fix nudges a taken timestamp forward by 1 µs until it is free; everything else, including the
 * arguments, the reply and the stored data, is the library's. `script.test.ts` fails if the
 * installed library's script drifts from this copy.
 *
 * ARGV: now (ms), duration (ms), max, peek ('1' = read only). Reply: {remaining before this request
 * (0 = refused, not counted), reset (epoch seconds, floored), max}.
 */
export const SLIDING_WINDOW_LUA = `
local key = KEYS[1]
local now = tonumber(ARGV[1])
local duration = tonumber(ARGV[2])
local max = tonumber(ARGV[3])
local peek = ARGV[4] == '1'
local start = now - duration

-- Check if the key exists
local exists = redis.call('EXISTS', key)

local count = 0
local oldest = now

if exists == 1 then
  -- Remove expired entries based on the current duration
  redis.call('ZREMRANGEBYSCORE', key, 0, start)

  -- Get count
  count = redis.call('ZCARD', key)

  -- Get oldest timestamp if we have entries
  if count > 0 then
    local oldest_result = redis.call('ZRANGE', key, 0, 0)
    oldest = tonumber(oldest_result[1])
  end
end

-- Calculate remaining (before adding current request if not peeking)
local remaining = max - count

-- Early return if already at limit
if remaining <= 0 then
  local resetMicro = oldest + duration
  return {0, math.floor(resetMicro / 1000), max}
end

-- If not peeking, add current request with current timestamp
if not peek then
  -- PTW fix: a timestamp another request already holds would not be counted again.
  while redis.call('ZSCORE', key, now) do
    now = now + 0.001
  end
  redis.call('ZADD', key, now, now)
end

-- Calculate reset time and handle trimming if needed
local resetMicro

-- Only perform trim if we're at or over max and not peeking
if not peek and count >= max then
  -- Get the entry at position -max for reset time calculation
  local oldest_in_range_result = redis.call('ZRANGE', key, -max, -max)
  local oldestInRange = oldest

  if #oldest_in_range_result > 0 then
    oldestInRange = tonumber(oldest_in_range_result[1])
  end

  -- Trim the set
  redis.call('ZREMRANGEBYRANK', key, 0, -(max + 1))

  -- Calculate reset time based on the entry at position -max
  resetMicro = oldestInRange + duration
else
  -- We're under the limit or peeking, use the oldest entry for reset time
  resetMicro = oldest + duration
end

-- Set expiration using the provided duration (only if not peeking)
if not peek then
  redis.call('PEXPIRE', key, duration)
end

return {remaining, math.floor(resetMicro / 1000), max}
`;
