/**
 * Reads the call's policy sets: per set its policies, each with its machine module `m` (`make_machine`
 * builds one from its code), made once per call and only when a policy needs it.
 */
export const SETS_LUA = `
local made = {}
local function machine(code)
  local m = made[code]
  if not m then
    m = make_machine(code)
    made[code] = m
  end
  return m
end

local sets, a = {}, 3
for s = 1, tonumber(ARGV[2]) do
  local n = tonumber(ARGV[a])
  a = a + 1
  local ps = {}
  for i = 1, n do
    ps[i] = {
      m = machine(tonumber(ARGV[a])), limit = tonumber(ARGV[a + 1]),
      window = tonumber(ARGV[a + 2]), burst = tonumber(ARGV[a + 3]),
    }
    a = a + 4
  end
  sets[s] = ps
end
`;
