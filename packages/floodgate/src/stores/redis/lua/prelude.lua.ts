/**
 * What every algorithm module may use: the time decided at (`now`), the expiry slack, number formatting,
 * and `in_string`, the storage of a state kept as one string. Runs once per script call, so it defines
 * only what all modules share; each module's own functions are made only when a call uses it.
 */
export const PRELUDE = `
local floor, ceil = math.floor, math.ceil
local match = string.match
local function fmt(x) return string.format('%.0f', x) end
local function fields(raw)
  local out = {}
  if raw then for w in string.gmatch(raw, '%S+') do out[#out + 1] = w end end
  return out
end

-- With the caller's time (tests), Redis still expires keys on its own clock: a minute of slack keeps state
-- alive while the two disagree. Stale state is harmless; every algorithm reads times, not presence.
local now = tonumber(ARGV[1])
local slack = 0
if now then
  slack = 60000
else
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000 + floor(tonumber(time[2]) / 1000)
end

-- A state kept as one string: GET, then SET with the time it stops mattering.
local function in_string(parse, encode, consume, refund)
  return {
    load = function(key) return parse(redis.call('GET', key)) end,
    save = function(key, old, s, reset_at)
      if s == nil or reset_at <= now then
        redis.call('DEL', key)
      else
        redis.call('SET', key, encode(s), 'PX', fmt(reset_at - now + slack))
      end
    end,
    consume = consume,
    refund = refund,
  }
end
`;
