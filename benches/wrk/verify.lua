-- POST {iss}/federation/verify with a warm partner key cache: every request spends one
-- pre-generated partner assertion (single use), as token_assertion.lua does. The answer is 200
-- either way, so a body without "valid":true counts as `invalid` in the summary.
--   BENCH_ASSERTIONS, BENCH_THREADS  as in token_assertion.lua
--   BENCH_AUTHORIZATION              Bearer access token of one of the organization's agents
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local list, i
local headers = { ["Content-Type"] = "application/json" }

function init(args)
   list = my_lines(env("BENCH_ASSERTIONS"), tid, tonumber(env("BENCH_THREADS")))
   i = 0
   headers["Authorization"] = env("BENCH_AUTHORIZATION")
end

function request()
   i = i + 1
   local a = list[i]
   if a == nil then
      exhausted = 1
      wrk.thread:stop()
      return wrk.format("GET", "/healthz")
   end
   return wrk.format("POST", nil, headers, '{"assertion":"' .. a .. '"}')
end

function response(status, hdrs, body)
   if status == 200 and not string.find(body, '"valid":true', 1, true) then
      invalid = invalid + 1
   end
end
