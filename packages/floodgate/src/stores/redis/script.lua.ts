import { createHash } from 'node:crypto';

/**
 * One script decides a batch of operations, each on one identifier's policies, atomically: Redis runs a
 * script to completion before any other command, so no other client can slip between reading and writing
 * a counter (the GET-then-SETEX race). Each algorithm below mirrors its pure TypeScript twin in
 * `core/algorithms` line for line; the shared decision vectors hold both to the same answers.
 *
 * KEYS: every operation's policy keys, in order.
 * ARGV: now ('' = the server's TIME); the number of policy sets in the batch, then per set its number of
 *       policies and per policy: algorithm code, limit, window, burst; then per operation: its set (1-based),
 *       mode (c)onsume, (p)eek, (r)efund, (x) reset, (l)ease, (u)nlease, (g)roup; cost; lease ('' for none).
 *       `l` consumes cost plus up to `lease` more units (a quota lease, never more than a quarter of what is
 *       left, so the last units go one by one); `u` refunds `cost` leased units unless the time is already
 *       at or past `lease`, the end of the earliest window they were charged in.
 *       `g` opens a group of `lease` operations (this one and those after it, all marked `g`) that are
 *       charged all or none.
 *       A set is sent once per call however many operations use it: most batches share one.
 * Reply: the time decided at (ms), then per operation (after the units granted, for `l`) and policy 4
 *        integers: allowed (1/0), remaining, resetAt, retryAfter (-1: never).
 *
 * Each algorithm loads and saves its own state, doing the least Redis work it allows: a fixed window is a
 * hash whose count an allowed request raises with one HINCRBY; the others are strings of integers
 * separated by spaces. Every key expires when its state stops mattering.
 */
export const BATCH_SCRIPT = `
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
local function in_string(parse, encode)
  return {
    load = function(key) return parse(redis.call('GET', key)) end,
    save = function(key, old, s, reset_at)
      if s == nil or reset_at <= now then
        redis.call('DEL', key)
      else
        redis.call('SET', key, encode(s), 'PX', fmt(reset_at - now + slack))
      end
    end,
  }
end

-- GCRA and token bucket: "t r", the TAT as t + r / limit ms.
local function gcra_parse(raw)
  if not raw then return nil end
  local t, r = match(raw, '^(%-?%d+) (%d+)$')
  return { t = tonumber(t), r = tonumber(r) }
end
local function gcra_encode(s) return fmt(s.t) .. ' ' .. fmt(s.r) end
local function gcra_consume(s, now, cost, limit, window, burst)
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
local function gcra_refund(s, now, cost, limit, window)
  if not s or s.t < now then return nil end
  local debt = (s.t - now) * limit + s.r - cost * window
  if debt <= 0 then return nil end
  return { t = now + floor(debt / limit), r = debt % limit }
end

-- Fixed window: a hash, s = start and c = count, expiring with its window. A request allowed in an open
-- window is one HINCRBY: the key's expiry is already its window's end.
local function fw_load(key)
  local f = redis.call('HMGET', key, 's', 'c')
  if not f[1] then return nil end
  return { start = tonumber(f[1]), count = tonumber(f[2]) }
end
local function fw_save(key, old, s, reset_at)
  if s == nil or reset_at <= now then
    redis.call('DEL', key)
  elseif old and old.start == s.start then
    redis.call('HINCRBY', key, 'c', fmt(s.count - old.count))
  else
    redis.call('HSET', key, 's', fmt(s.start), 'c', fmt(s.count))
    redis.call('PEXPIRE', key, fmt(reset_at - now + slack))
  end
end
local function fw_consume(s, now, cost, limit, window)
  local open = s ~= nil and now < s.start + window
  local count, finish = 0, now
  if open then count, finish = s.count, s.start + window end
  if cost > limit then return 0, limit - count, finish, -1, s end
  if count + cost > limit then return 0, limit - count, finish, finish - now, s end
  if cost == 0 then return 1, limit - count, finish, 0, s end
  local start = now
  if open then start = s.start end
  return 1, limit - count - cost, start + window, 0, { start = start, count = count + cost }
end
local function fw_refund(s, now, cost, limit, window)
  if not s or now >= s.start + window then return nil end
  local count = s.count - cost
  if count > 0 then return { start = s.start, count = count } end
  return nil
end

-- Sliding window log: "t1 c1 t2 c2 ...", oldest first.
local function swl_parse(raw)
  local f = fields(raw)
  if #f == 0 then return nil end
  local times, costs = {}, {}
  for i = 1, #f, 2 do
    times[#times + 1] = tonumber(f[i])
    costs[#costs + 1] = tonumber(f[i + 1])
  end
  return { times = times, costs = costs }
end
local function swl_encode(s)
  local parts = {}
  for i = 1, #s.times do
    parts[#parts + 1] = fmt(s.times[i])
    parts[#parts + 1] = fmt(s.costs[i])
  end
  return table.concat(parts, ' ')
end
local function swl_first(s, now, window)
  local i = 1
  while i <= #s.times and s.times[i] + window <= now do i = i + 1 end
  return i
end
local function swl_consume(s, now, cost, limit, window)
  local times, costs, first = {}, {}, 1
  if s then times, costs, first = s.times, s.costs, swl_first(s, now, window) end
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
local function swl_refund(s, now, cost, limit, window)
  if not s then return nil end
  local first = swl_first(s, now, window)
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

-- Sliding window counter: "start previous current", windows aligned to the clock.
local function swc_parse(raw)
  if not raw then return nil end
  local start, previous, current = match(raw, '^(%-?%d+) (%d+) (%d+)$')
  return { start = tonumber(start), previous = tonumber(previous), current = tonumber(current) }
end
local function swc_encode(s) return fmt(s.start) .. ' ' .. fmt(s.previous) .. ' ' .. fmt(s.current) end
local function swc_consume(s, now, cost, limit, window)
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
local function swc_refund(s, now, cost, limit, window)
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

-- Concurrency: "id cost expiresAt ..." per lease, in the order granted.
local function cc_parse(raw)
  local f = fields(raw)
  if #f == 0 then return nil end
  local leases = {}
  for i = 1, #f, 3 do
    leases[#leases + 1] = { id = f[i], cost = tonumber(f[i + 1]), exp = tonumber(f[i + 2]) }
  end
  return { leases = leases }
end
local function cc_encode(s)
  local parts = {}
  for _, l in ipairs(s.leases) do
    parts[#parts + 1] = l.id .. ' ' .. fmt(l.cost) .. ' ' .. fmt(l.exp)
  end
  return table.concat(parts, ' ')
end
local function cc_live(s, now)
  local out = {}
  if s then for _, l in ipairs(s.leases) do if l.exp > now then out[#out + 1] = l end end end
  return out
end
local function cc_consume(s, now, cost, limit, window, burst, lease)
  local leases = cc_live(s, now)
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
local function cc_refund(s, now, cost, limit, window, lease)
  local leases = cc_live(s, now)
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

local function with(storage, algo)
  storage.consume, storage.refund = algo.consume, algo.refund
  return storage
end
local ALGORITHMS = {
  with(in_string(gcra_parse, gcra_encode), { consume = gcra_consume, refund = gcra_refund }),
  { load = fw_load, save = fw_save, consume = fw_consume, refund = fw_refund },
  with(in_string(swl_parse, swl_encode), { consume = swl_consume, refund = swl_refund }),
  with(in_string(swc_parse, swc_encode), { consume = swc_consume, refund = swc_refund }),
  with(in_string(cc_parse, cc_encode), { consume = cc_consume, refund = cc_refund }),
}

local reply, r = { now }, 1
local function push(ok, remaining, reset_at, retry)
  reply[r + 1], reply[r + 2], reply[r + 3], reply[r + 4] = ok, remaining, reset_at, retry
  r = r + 4
end

-- A lease takes at most this share of what is left: near the limit, grants shrink to nothing.
local LEASE_SHARE = 4

-- Any mix of algorithms: load every state, decide each policy, charge all or none, save what changed.
-- Returns the extra units granted (mode l).
local function decide_any(ps, k, mode, cost, lease)
  local n = #ps
  local olds, states = {}, {}
  for i = 1, n do
    local p = ps[i]
    olds[i] = p.algo.load(KEYS[k + i])
    states[i] = olds[i]
    if mode == 'r' then
      states[i] = p.algo.refund(olds[i], now, cost, p.limit, p.window, lease)
    end
  end
  local c = cost
  if mode == 'r' then c = 0 end
  local results, all, free = {}, true, nil
  for i = 1, n do
    local p = ps[i]
    local ok, remaining, reset_at, retry, nxt = p.algo.consume(states[i], now, c, p.limit, p.window, p.burst, lease)
    results[i] = { ok, remaining, reset_at, retry, nxt }
    if ok == 0 then all = false end
    if free == nil or remaining < free then free = remaining end
  end
  local extra = 0
  if mode == 'l' and all then extra = math.min(tonumber(lease), floor(free / LEASE_SHARE)) end
  if extra > 0 then
    for i = 1, n do
      local p = ps[i]
      local ok, remaining, reset_at, retry, nxt = p.algo.consume(states[i], now, c + extra, p.limit, p.window, p.burst, '')
      results[i] = { ok, remaining, reset_at, retry, nxt }
    end
  end
  if not all then
    -- Nothing is charged: policies that would have allowed report their state as it stays.
    for i = 1, n do
      local p = ps[i]
      if results[i][1] == 1 then
        local ok, remaining, reset_at, retry = p.algo.consume(states[i], now, 0, p.limit, p.window, p.burst, lease)
        results[i] = { ok, remaining, reset_at, retry, states[i] }
      end
    end
  end
  for i = 1, n do
    local p, res = ps[i], results[i]
    if mode == 'r' then
      p.algo.save(KEYS[k + i], olds[i], states[i], res[3])
    elseif (mode == 'c' or mode == 'l') and all and res[5] ~= states[i] then
      p.algo.save(KEYS[k + i], states[i], res[5], res[3])
    end
    push(res[1], res[2], res[3], res[4])
  end
  return extra
end

-- Fixed windows only (the same answers as fw_consume and fw_refund through decide_any), with the least
-- work a window allows: one HMGET per policy, and to charge one HINCRBY, or HSET and PEXPIRE when the
-- window opens. The two passes share these two arrays instead of making tables per decision.
local fw_starts, fw_counts = {}, {}
local function decide_windows(ps, k, mode, cost, lease)
  local n, all, free = #ps, true, nil
  local c = cost
  if mode == 'r' then c = 0 end
  for i = 1, n do
    local p, key = ps[i], KEYS[k + i]
    local f = redis.call('HMGET', key, 's', 'c')
    local start, count = tonumber(f[1]), 0
    if start and now < start + p.window then count = tonumber(f[2]) else start = nil end
    if mode == 'r' and f[1] then
      if start and count > cost then
        if cost > 0 then redis.call('HINCRBY', key, 'c', fmt(cost * -1)) end
        count = count - cost
      else
        redis.call('DEL', key)
        start, count = nil, 0
      end
    end
    fw_starts[i], fw_counts[i] = start, count
    if c > p.limit or count + c > p.limit then all = false end
    if free == nil or p.limit - count - c < free then free = p.limit - count - c end
  end
  local extra = 0
  if mode == 'l' and all then
    extra = math.min(tonumber(lease), floor(free / LEASE_SHARE))
    c = c + extra
  end
  for i = 1, n do
    local p, start, count = ps[i], fw_starts[i], fw_counts[i]
    local limit, window = p.limit, p.window
    local finish = now
    if start then finish = start + window end
    if c > limit then
      push(0, limit - count, finish, -1)
    elseif count + c > limit then
      push(0, limit - count, finish, finish - now)
    elseif c == 0 or not all then
      push(1, limit - count, finish, 0)
    else
      if mode == 'c' or mode == 'l' then
        local key = KEYS[k + i]
        if start then
          redis.call('HINCRBY', key, 'c', fmt(c))
        else
          redis.call('HSET', key, 's', fmt(now), 'c', fmt(c))
          redis.call('PEXPIRE', key, fmt(window + slack))
        end
      end
      push(1, limit - count - c, (start or now) + window, 0)
    end
  end
  return extra
end

-- The batch's policy sets, each with its decider, chosen once per call.
local sets, a = {}, 3
for s = 1, tonumber(ARGV[2]) do
  local n = tonumber(ARGV[a])
  a = a + 1
  local ps, windows = { decide = decide_any }, true
  for i = 1, n do
    ps[i] = {
      algo = ALGORITHMS[tonumber(ARGV[a])], limit = tonumber(ARGV[a + 1]),
      window = tonumber(ARGV[a + 2]), burst = tonumber(ARGV[a + 3]),
    }
    if ARGV[a] ~= '2' then windows = false end
    a = a + 4
  end
  if windows then ps.decide = decide_windows end
  sets[s] = ps
end

local k = 0

-- A group (mode g, its size in the lease field): several identifiers charged all or none. Every member is
-- looked at (peek), then all are charged if all would allow; otherwise each reports its look, at no cost
-- for those that would have allowed. The second pass writes the reply over the first.
local function decide_group(n)
  local from_r, from_a, from_k, all, oks = r, a, k, true, {}
  for j = 1, n do
    local ps, cost = sets[tonumber(ARGV[a])], tonumber(ARGV[a + 2])
    local before = r
    ps.decide(ps, k, 'p', cost, '')
    oks[j] = true
    for x = before + 1, r, 4 do
      if reply[x] == 0 then oks[j], all = false, false end
    end
    a, k = a + 4, k + #ps
  end
  r, a, k = from_r, from_a, from_k
  for j = 1, n do
    local ps, cost = sets[tonumber(ARGV[a])], tonumber(ARGV[a + 2])
    if all then
      ps.decide(ps, k, 'c', cost, '')
    elseif oks[j] then
      ps.decide(ps, k, 'p', 0, '')
    else
      ps.decide(ps, k, 'p', cost, '')
    end
    a, k = a + 4, k + #ps
  end
end

while a <= #ARGV do
  local ps, mode, cost, lease = sets[tonumber(ARGV[a])], ARGV[a + 1], tonumber(ARGV[a + 2]), ARGV[a + 3]
  if mode == 'g' then
    decide_group(tonumber(lease))
  else
    if mode == 'u' then
      -- Leased units go back only into the windows they came from: past the earliest one's end, they stay.
      if now < tonumber(lease) then mode = 'r' else mode, cost = 'p', 0 end
      lease = ''
    end
    if mode == 'x' then
      for i = 1, #ps do redis.call('DEL', KEYS[k + i]) end
    elseif mode == 'l' then
      local at = r + 1
      r = at
      reply[at] = ps.decide(ps, k, mode, cost, lease)
    else
      ps.decide(ps, k, mode, cost, lease)
    end
    a = a + 4
    k = k + #ps
  end
end
return reply
`;

export const BATCH_SHA = createHash('sha1').update(BATCH_SCRIPT).digest('hex');
