/** Sliding window log, mirroring `core/algorithms/sliding-window-log.ts`: "t1 c1 t2 c2 ...", oldest first. */
export const SLIDING_WINDOW_LOG_LUA = `
local function parse(raw)
  local f = fields(raw)
  if #f == 0 then return nil end
  local times, costs = {}, {}
  for i = 1, #f, 2 do
    times[#times + 1] = tonumber(f[i])
    costs[#costs + 1] = tonumber(f[i + 1])
  end
  return { times = times, costs = costs }
end
local function encode(s)
  local parts = {}
  for i = 1, #s.times do
    parts[#parts + 1] = fmt(s.times[i])
    parts[#parts + 1] = fmt(s.costs[i])
  end
  return table.concat(parts, ' ')
end
local function first_live(s, now, window)
  local i = 1
  while i <= #s.times and s.times[i] + window <= now do i = i + 1 end
  return i
end
local function consume(s, now, cost, limit, window)
  local times, costs, first = {}, {}, 1
  if s then times, costs, first = s.times, s.costs, first_live(s, now, window) end
  local used = 0
  for i = first, #costs do used = used + costs[i] end
  local last = now
  if #times >= first then last = times[#times] + window end
  if cost > limit then return 0, limit - used, last, -1, s end
  if used + cost > limit then
    local freed, i, excess = 0, first, used + cost - limit
    while freed < excess do
      freed = freed + costs[i]
      i = i + 1
    end
    return 0, limit - used, last, times[i - 1] + window - now, s
  end
  if cost == 0 then return 1, limit - used, last, 0, s end
  local nt, nc = {}, {}
  for i = first, #times do
    nt[#nt + 1] = times[i]
    nc[#nc + 1] = costs[i]
  end
  if #nt > 0 and nt[#nt] == now then
    nc[#nc] = nc[#nc] + cost
  else
    nt[#nt + 1] = now
    nc[#nc + 1] = cost
  end
  return 1, limit - used - cost, now + window, 0, { times = nt, costs = nc }
end
local function refund(s, now, cost, limit, window)
  if not s then return nil end
  local first = first_live(s, now, window)
  local times, costs = {}, {}
  for i = first, #s.times do
    times[#times + 1] = s.times[i]
    costs[#costs + 1] = s.costs[i]
  end
  local left = cost
  while left > 0 and #costs > 0 do
    local take = math.min(left, costs[#costs])
    left = left - take
    costs[#costs] = costs[#costs] - take
    if costs[#costs] == 0 then
      costs[#costs] = nil
      times[#times] = nil
    end
  end
  if #times > 0 then return { times = times, costs = costs } end
  return nil
end
return in_string(parse, encode, consume, refund)
`;
