/** Sliding window counter, mirroring `core/algorithms/sliding-window-counter.ts`: "start previous current", windows aligned to the clock. */
export const SLIDING_WINDOW_COUNTER_LUA = `
local function parse(raw)
  if not raw then return nil end
  local start, previous, current = match(raw, '^(%-?%d+) (%d+) (%d+)$')
  return { start = tonumber(start), previous = tonumber(previous), current = tonumber(current) }
end
local function encode(s) return fmt(s.start) .. ' ' .. fmt(s.previous) .. ' ' .. fmt(s.current) end
local function consume(s, now, cost, limit, window)
  local start = now - now % window
  local previous, current = 0, 0
  if s then
    if s.start == start then
      previous, current = s.previous, s.current
    elseif s.start + window == start then
      previous = s.current
    end
  end
  local elapsed = now - start
  local weighted = previous * (window - elapsed)
  local capacity = limit * window
  local function reset_for(count)
    if count > 0 then return start + 2 * window end
    if previous > 0 then return start + window end
    return now
  end
  local available = math.max(0, floor((capacity - weighted - current * window) / window))
  if cost > limit then return 0, available, reset_for(current), -1, s end
  if weighted + (current + cost) * window > capacity then
    local retry_at
    if current + cost <= limit then
      retry_at = start + window - floor(((limit - current - cost) * window) / previous)
    else
      retry_at = start + window + window - floor(((limit - cost) * window) / current)
    end
    return 0, available, reset_for(current), retry_at - now, s
  end
  if cost == 0 then return 1, available, reset_for(current), 0, s end
  local nxt = current + cost
  return 1, floor((capacity - weighted - nxt * window) / window), reset_for(nxt), 0,
    { start = start, previous = previous, current = nxt }
end
local function refund(s, now, cost, limit, window)
  if not s then return nil end
  local start = now - now % window
  if s.start == start then
    local current = math.max(0, s.current - cost)
    if current > 0 or s.previous > 0 then return { start = start, previous = s.previous, current = current } end
    return nil
  end
  if s.start + window == start then
    local previous = math.max(0, s.current - cost)
    if previous > 0 then return { start = start, previous = previous, current = 0 } end
  end
  return nil
end
return in_string(parse, encode, consume, refund)
`;
