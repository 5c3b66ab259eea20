-- One fixed request, formatted once (wrk's fastest mode): discovery, JWKS, DID documents,
-- /agent-info, introspection, the client_secret_basic token requests and the floor's points.
--   BENCH_METHOD         GET (default) or POST
--   BENCH_AUTHORIZATION  optional Authorization header (Basic ... / Bearer ...)
--   BENCH_BODY           optional body; sent as application/x-www-form-urlencoded
--   BENCH_ACCEPT         optional Accept header
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

wrk.method = env("BENCH_METHOD", "GET")
local auth = os.getenv("BENCH_AUTHORIZATION")
if auth and auth ~= "" then
   wrk.headers["Authorization"] = auth
end
local accept = os.getenv("BENCH_ACCEPT")
if accept and accept ~= "" then
   wrk.headers["Accept"] = accept
end
local body = os.getenv("BENCH_BODY")
if body and body ~= "" then
   wrk.body = body
   wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end
