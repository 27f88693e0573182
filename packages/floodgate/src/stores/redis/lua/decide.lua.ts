/**
 * What the script does with the operations of a call, after the policy sets are read (`sets`, each policy
 * with its machine `m`, limit, window, burst): every operation decides one identifier's set through its
 * machines' load, consume, refund and save, all policies checked and then all charged, or none.
 * `GRANT_SHARE`: a quota grant takes at most this share of what is left, so grants shrink to nothing
 * near the limit and the last units are decided one by one.
 */
export const DECIDE_LUA = `
local GRANT_SHARE = 4
local reply, r = { now }, 1

-- kind: 'consume' charges if every policy allows, 'peek' only looks, 'refund' gives cost back first and
-- then looks, 'grant' consumes cost plus up to ask more units (returned). Results go to reply[r + 1 ...],
-- four per policy; the arrays below are reused by every decision of the call.
local olds, states, nexts = {}, {}, {}
local function decide(ps, k, kind, cost, lease, ask)
  local n, base = #ps, r
  local c = cost
  if kind == 'refund' then c = 0 end
  local all, free = true, nil
  for i = 1, n do
    local p = ps[i]
    local m = p.m
    local old = m.load(KEYS[k + i])
    local s = old
    if kind == 'refund' then s = m.refund(old, now, cost, p.limit, p.window, lease) end
    olds[i], states[i] = old, s
    local ok, remaining, reset_at, retry, nxt = m.consume(s, now, c, p.limit, p.window, p.burst, lease)
    local at = base + 4 * i - 3
    reply[at], reply[at + 1], reply[at + 2], reply[at + 3] = ok, remaining, reset_at, retry
    nexts[i] = nxt
    if ok == 0 then all = false end
    if free == nil or remaining < free then free = remaining end
  end
  r = base + 4 * n
  local extra = 0
  if kind == 'grant' and all then
    extra = math.min(ask, floor(free / GRANT_SHARE))
    if extra > 0 then
      for i = 1, n do
        local p = ps[i]
        local ok, remaining, reset_at, retry, nxt = p.m.consume(states[i], now, c + extra, p.limit, p.window, p.burst, '')
        local at = base + 4 * i - 3
        reply[at], reply[at + 1], reply[at + 2], reply[at + 3] = ok, remaining, reset_at, retry
        nexts[i] = nxt
      end
    end
  end
  if not all then
    -- Nothing is charged: policies that would have allowed report their state as it stays.
    for i = 1, n do
      local at = base + 4 * i - 3
      if reply[at] == 1 then
        local p = ps[i]
        local ok, remaining, reset_at, retry = p.m.consume(states[i], now, 0, p.limit, p.window, p.burst, lease)
        reply[at], reply[at + 1], reply[at + 2], reply[at + 3] = ok, remaining, reset_at, retry
      end
    end
  end
  for i = 1, n do
    if kind == 'refund' then
      ps[i].m.save(KEYS[k + i], olds[i], states[i], reply[base + 4 * i - 1])
    elseif all and (kind == 'consume' or kind == 'grant') and nexts[i] ~= states[i] then
      ps[i].m.save(KEYS[k + i], states[i], nexts[i], reply[base + 4 * i - 1])
    end
  end
  return extra
end

local k = 0

-- A group of n identifiers charged all or none: every member is looked at (peek), then all are charged if
-- all would allow; otherwise each reports its look, at no cost for those that would have allowed. The
-- second pass writes the reply over the first. Members are (set, cost) pairs from ARGV[a].
local function decide_group(n)
  local from_r, from_a, from_k, all, oks = r, a, k, true, {}
  for j = 1, n do
    local ps, cost = sets[tonumber(ARGV[a])], tonumber(ARGV[a + 1])
    local before = r
    decide(ps, k, 'peek', cost, '', 0)
    oks[j] = true
    for x = before + 1, r, 4 do
      if reply[x] == 0 then oks[j], all = false, false end
    end
    a, k = a + 2, k + #ps
  end
  r, a, k = from_r, from_a, from_k
  for j = 1, n do
    local ps, cost = sets[tonumber(ARGV[a])], tonumber(ARGV[a + 1])
    if all then
      decide(ps, k, 'consume', cost, '', 0)
    elseif oks[j] then
      decide(ps, k, 'peek', 0, '', 0)
    else
      decide(ps, k, 'peek', cost, '', 0)
    end
    a, k = a + 2, k + #ps
  end
end

while a <= #ARGV do
  local kind = ARGV[a]
  if kind == 'group' then
    local n = tonumber(ARGV[a + 1])
    a = a + 2
    decide_group(n)
  else
    local ps = sets[tonumber(ARGV[a + 1])]
    if kind == 'consume' or kind == 'refund' then
      decide(ps, k, kind, tonumber(ARGV[a + 2]), ARGV[a + 3], 0)
      a = a + 4
    elseif kind == 'peek' then
      decide(ps, k, kind, tonumber(ARGV[a + 2]), '', 0)
      a = a + 3
    elseif kind == 'grant' then
      r = r + 1
      local at = r
      reply[at] = decide(ps, k, kind, tonumber(ARGV[a + 2]), '', tonumber(ARGV[a + 3]))
      a = a + 4
    elseif kind == 'return' then
      -- Granted units go back only into the windows they came from: past the earliest one's end, they stay.
      if now < tonumber(ARGV[a + 3]) then
        decide(ps, k, 'refund', tonumber(ARGV[a + 2]), '', 0)
      else
        decide(ps, k, 'peek', 0, '', 0)
      end
      a = a + 4
    elseif kind == 'reset' then
      for i = 1, #ps do redis.call('DEL', KEYS[k + i]) end
      a = a + 2
    else
      return redis.error_reply('floodgate: unknown operation ' .. tostring(kind))
    end
    k = k + #ps
  end
end
return reply
`;
