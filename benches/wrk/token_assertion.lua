-- Token requests that spend one pre-generated single-use assertion each: private_key_jwt client
-- assertions (the default form), the jwt-bearer grant's partner assertions (BENCH_BODY
-- "grant_type=...jwt-bearer&assertion=") and the floor's assert_es256. Thread t of n takes lines t, t+n, t+2n... of $BENCH_ASSERTIONS, in order, and
-- stops when they run out (flagged as exhausted in the summary: the run is then invalid).
--   BENCH_ASSERTIONS  file of compact JWTs, one per line
--   BENCH_THREADS     wrk's -t
--   BENCH_BODY        the form before the assertion (default: client credentials + assertion type)
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local list, i, prefix
local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }

function init(args)
   list = my_lines(env("BENCH_ASSERTIONS"), tid, tonumber(env("BENCH_THREADS")))
   i = 0
   prefix = env("BENCH_BODY", "grant_type=client_credentials"
      .. "&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
      .. "&client_assertion=")
end

function request()
   i = i + 1
   local a = list[i]
   if a == nil then
      exhausted = 1
      wrk.thread:stop()
      return wrk.format("GET", "/healthz")
   end
   return wrk.format("POST", nil, headers, prefix .. a)
end
