/**
 * Fixed window, mirroring `core/algorithms/fixed-window.ts`: a hash, s = start and c = count, expiring with
 * its window. Its save is the shortcut a window allows: a charge in an open window is one HINCRBY (the
 * key's expiry already is the window's end), a new window one HSET and PEXPIRE.
 */
export const FIXED_WINDOW_LUA = `
local function load(key)
  local f = redis.call('HMGET', key, 's', 'c')
  if not f[1] then return nil end
  return { start = tonumber(f[1]), count = tonumber(f[2]) }
end
local function save(key, old, s, reset_at)
  if s == nil or reset_at <= now then
    redis.call('DEL', key)
  elseif old and old.start == s.start then
    if s.count ~= old.count then redis.call('HINCRBY', key, 'c', fmt(s.count - old.count)) end
  else
    redis.call('HSET', key, 's', fmt(s.start), 'c', fmt(s.count))
    redis.call('PEXPIRE', key, fmt(reset_at - now + slack))
  end
end
local function consume(s, now, cost, limit, window)
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
local function refund(s, now, cost, limit, window)
  if not s or now >= s.start + window then return nil end
  local count = s.count - cost
  if count > 0 then return { start = s.start, count = count } end
  return nil
end
return { load = load, save = save, consume = consume, refund = refund }
`;
