-- wrk script: huiqi's mixed read/write workload (the same mix as bench/loadgen's
-- "mixed"): 60% enterprise policy packages, 20% enterprise reads, 5% policy
-- audience counts, 15% PATCH writes of an enterprise's head count.
-- Environment: HUIQI_KEY (bearer key), LOAD_USCCS (file, one credit code a line),
-- LOAD_POLICIES (number of policies, ids 1..N).
local usccs = {}
local npol = tonumber(os.getenv("LOAD_POLICIES") or "12")
local auth = "Bearer " .. (os.getenv("HUIQI_KEY") or "")

function init(args)
  for line in io.lines(os.getenv("LOAD_USCCS")) do
    if #line >= 18 then usccs[#usccs + 1] = line:sub(1, 18) end
  end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end

function request()
  local u = usccs[math.random(#usccs)]
  local r = math.random(100)
  local h = { ["Authorization"] = auth, ["Host"] = "load" }
  if r <= 60 then
    return wrk.format("GET", "/v1/enterprises/" .. u .. "/policies", h)
  elseif r <= 80 then
    return wrk.format("GET", "/v1/enterprises/" .. u, h)
  elseif r <= 85 then
    return wrk.format("GET", "/v1/policies/" .. math.random(npol) .. "/audience", h)
  end
  h["Content-Type"] = "application/merge-patch+json"
  return wrk.format("PATCH", "/v1/enterprises/" .. u, h,
                    '{"employees":' .. math.random(0, 399) .. '}')
end

function done(summary, latency, requests)
  io.write(string.format("wrk_non2xx %d\n", summary.errors.status))
end
