/** GCRA (and token bucket, the same machine), mirroring `core/algorithms/gcra.ts`: "t r", the TAT as t + r / limit ms. */
export const GCRA_LUA = `
local function parse(raw)
  if not raw then return nil end
  local t, r = match(raw, '^(%-?%d+) (%d+)$')
  return { t = tonumber(t), r = tonumber(r) }
end
local function encode(s) return fmt(s.t) .. ' ' .. fmt(s.r) end
local function consume(s, now, cost, limit, window, burst)
  local t, r = now, 0
  if s and s.t >= now then t, r = s.t, s.r end
  local debt = (t - now) * limit + r
  local capacity = burst * window
  local reset = t
  if r > 0 then reset = t + 1 end
  if cost > burst then return 0, floor((capacity - debt) / window), reset, -1, s end
  local needed = debt + cost * window
  if needed > capacity then
    return 0, floor((capacity - debt) / window), reset, ceil((needed - capacity) / limit), s
  end
  local sum = r + cost * window
  local nt = t + floor(sum / limit)
  local nr = sum % limit
  local nreset = nt
  if nr > 0 then nreset = nt + 1 end
  if cost == 0 then return 1, floor((capacity - needed) / window), nreset, 0, s end
  return 1, floor((capacity - needed) / window), nreset, 0, { t = nt, r = nr }
end
local function refund(s, now, cost, limit, window)
  if not s or s.t < now then return nil end
  local debt = (s.t - now) * limit + s.r - cost * window
  if debt <= 0 then return nil end
  return { t = now + floor(debt / limit), r = debt % limit }
end
return in_string(parse, encode, consume, refund)
`;
