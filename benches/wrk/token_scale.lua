-- client_secret_basic token requests over the seeded organizations and agents (benches/tools
-- `seed`): agent j belongs to organization org-(j % orgs); its client id and secret derive from j
-- exactly as the seeder derived them, so no credentials file is needed.
--   BENCH_ORGS, BENCH_AGENTS  what was seeded
--   BENCH_SEQUENTIAL          unset: every request draws an agent uniformly at random (the
--                             measured points); 1: a pass over agents BENCH_START..orgs-1, one
--                             request per organization, split across threads, stopping at the end
--                             (the warm-up that loads every organization's keys; benches/run runs
--                             it in 1 s slices, each starting where the slowest thread stopped)
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local orgs, agents, sequential, nthreads
local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
local body = "grant_type=client_credentials"

function init(args)
   orgs = tonumber(env("BENCH_ORGS"))
   agents = tonumber(env("BENCH_AGENTS"))
   sequential = os.getenv("BENCH_SEQUENTIAL") == "1"
   nthreads = tonumber(env("BENCH_THREADS", "1"))
   next_index = tonumber(env("BENCH_START", "0")) + tid
   math.randomseed(os.time() * 1000 + tid * 7919 + math.floor(os.clock() * 1e6))
end

function request()
   local j
   if sequential then
      j = next_index
      next_index = next_index + nthreads
      if j >= orgs then
         exhausted = 1
         wrk.thread:stop()
         return wrk.format("GET", "/healthz")
      end
   else
      j = math.random(0, agents - 1)
   end
   local id = string.format("0196b000-0000-7000-8000-%012x", j)
   local secret = string.format("bench-secret-%030d", j)
   headers["Authorization"] = "Basic " .. base64(id .. ":" .. secret)
   return wrk.format("POST", "/orgs/org-" .. (j % orgs) .. "/oauth2/token", headers, body)
end
