/** Concurrency, mirroring `core/algorithms/concurrency.ts`: "id cost expiresAt ..." per lease, in the order granted. */
export const CONCURRENCY_LUA = `
local function parse(raw)
  local f = fields(raw)
  if #f == 0 then return nil end
  local leases = {}
  for i = 1, #f, 3 do
    leases[#leases + 1] = { id = f[i], cost = tonumber(f[i + 1]), exp = tonumber(f[i + 2]) }
  end
  return { leases = leases }
end
local function encode(s)
  local parts = {}
  for _, l in ipairs(s.leases) do
    parts[#parts + 1] = l.id .. ' ' .. fmt(l.cost) .. ' ' .. fmt(l.exp)
  end
  return table.concat(parts, ' ')
end
local function live(s, now)
  local out = {}
  if s then for _, l in ipairs(s.leases) do if l.exp > now then out[#out + 1] = l end end end
  return out
end
local function consume(s, now, cost, limit, window, burst, lease)
  local leases = live(s, now)
  local used, last = 0, now
  for _, l in ipairs(leases) do
    used = used + l.cost
    if l.exp > last then last = l.exp end
  end
  if cost > limit then return 0, limit - used, last, -1, s end
  if used + cost > limit then
    local by_expiry = {}
    for i, l in ipairs(leases) do by_expiry[i] = l end
    table.sort(by_expiry, function(a, b) return a.exp < b.exp end)
    local freed, i = 0, 1
    while freed < used + cost - limit do
      freed = freed + by_expiry[i].cost
      i = i + 1
    end
    return 0, limit - used, last, by_expiry[i - 1].exp - now, s
  end
  if cost == 0 or lease == '' then return 1, limit - used - cost, last, 0, s end
  local expires = now + window
  leases[#leases + 1] = { id = lease, cost = cost, exp = expires }
  return 1, limit - used - cost, math.max(expires, last), 0, { leases = leases }
end
local function refund(s, now, cost, limit, window, lease)
  local leases = live(s, now)
  local kept = {}
  if lease ~= '' then
    for _, l in ipairs(leases) do if l.id ~= lease then kept[#kept + 1] = l end end
  else
    for i, l in ipairs(leases) do kept[i] = l end
    local left = cost
    while left > 0 and #kept > 0 do
      local top = kept[#kept]
      kept[#kept] = nil
      if top.cost > left then kept[#kept + 1] = { id = top.id, cost = top.cost - left, exp = top.exp } end
      left = left - top.cost
    end
  end
  if #kept > 0 then return { leases = kept } end
  return nil
end
return in_string(parse, encode, consume, refund)
`;
