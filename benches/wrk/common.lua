-- Shared by every load script: thread numbering, base64, reading a file of single-use values,
-- and the JSON summary `done` writes to $BENCH_OUT (benches/run adds the labels and RSS).
--
-- Counters a thread may set (summed over threads in the summary):
--   exhausted  1 when the thread ran out of single-use values before the end (the run is invalid:
--              wrk still divides by the whole duration)
--   invalid    answers that were 2xx but said no (federation verify's {"valid": false})
-- and `next_index` (the smallest over threads) for scripts that walk an index.

local threads = {}

function setup(thread)
   thread:set("tid", #threads)
   thread:set("exhausted", 0)
   thread:set("invalid", 0)
   table.insert(threads, thread)
end

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local b64 = {}
for i = 1, 64 do
   b64[i - 1] = b64chars:sub(i, i)
end

-- Standard base64 with padding (RFC 4648 §4), for Basic credentials.
function base64(s)
   local out, n = {}, #s
   for i = 1, n, 3 do
      local a, b, c = s:byte(i, i + 2)
      local v = a * 65536 + (b or 0) * 256 + (c or 0)
      local c1 = math.floor(v / 262144) % 64
      local c2 = math.floor(v / 4096) % 64
      local c3 = math.floor(v / 64) % 64
      local c4 = v % 64
      out[#out + 1] = b64[c1] .. b64[c2] .. (b and b64[c3] or "=") .. (c and b64[c4] or "=")
   end
   return table.concat(out)
end

-- The lines of `path` that belong to this thread: line k goes to thread k % nthreads, so each
-- value is used by exactly one thread, in file order.
function my_lines(path, tid, nthreads)
   local f = assert(io.open(path, "r"), "cannot open " .. path)
   local mine, k = {}, 0
   for line in f:lines() do
      if k % nthreads == tid and #line > 0 then
         mine[#mine + 1] = line
      end
      k = k + 1
   end
   f:close()
   return mine
end

function env(name, default)
   local v = os.getenv(name)
   if v == nil or v == "" then
      if default == nil then
         error("environment variable " .. name .. " is required")
      end
      return default
   end
   return v
end

function done(summary, latency, requests)
   local exhausted, invalid, next_index = 0, 0, -1
   for _, t in ipairs(threads) do
      exhausted = exhausted + (tonumber(t:get("exhausted")) or 0)
      invalid = invalid + (tonumber(t:get("invalid")) or 0)
      local n = tonumber(t:get("next_index"))
      if n and (next_index < 0 or n < next_index) then
         next_index = n
      end
   end
   local e = summary.errors
   local secs = summary.duration / 1e6
   local out = string.format(
      '{"requests":%d,"duration_s":%.3f,"rps":%.1f,"bytes":%d,' ..
      '"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,"mean_ms":%.3f,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"invalid":%d},' ..
      '"exhausted_threads":%d,"next_index":%d}',
      summary.requests, secs, summary.requests / secs, summary.bytes,
      latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
      latency.max / 1000, latency.mean / 1000,
      e.connect, e.read, e.write, e.status, e.timeout, invalid, exhausted, next_index)
   local path = os.getenv("BENCH_OUT")
   if path and path ~= "" then
      local f = assert(io.open(path, "w"))
      f:write(out, "\n")
      f:close()
   else
      io.write(out, "\n")
   end
end
