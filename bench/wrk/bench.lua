-- wrk script of the benchmarks: `wrk ... -s bench.lua URL -- MODE THREADS [FILE...]`.
--   get   [COOKIE]         GET the URL (with the cookie when given)
--   post  FILE             POST /api/orders, one line "ticketId<TAB>cookie" per request, never reused
--                          (thread k of THREADS takes lines k, k + THREADS, ...)
--   flash POOL BUYERS DONE one buyer per thread (run with -c equal to -t): reserve random tickets of
--                          POOL until this buyer has seen every one of them taken, then append a
--                          line to the file DONE (the harness stops wrk when every buyer has)
-- done() prints one line "BENCH_JSON {...}": counts by status, latency percentiles, sell-out times.
local ffi = require("ffi")
ffi.cdef [[ typedef struct { long tv_sec; long tv_nsec; } bench_ts; int clock_gettime(int, bench_ts *); ]]
local ts = ffi.new("bench_ts")
local function now()
   ffi.C.clock_gettime(0, ts) -- CLOCK_REALTIME: comparable between threads
   return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
end

local threads, next_id = {}, 0
function setup(thread)
   thread:set("tid", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

local function lines(path)
   local out = {}
   for line in io.lines(path) do
      if line ~= "" then table.insert(out, line) end
   end
   return out
end

-- Per-thread state (each thread has its own Lua state).
c2xx, c201, c400, c_reserved, c5xx, c503, c_other, first, last201, exhausted = 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
local mode, posts, pos, pool, buyer, current, done_file
-- BENCH_TRACEPARENT in the environment: every request carries it, as behind an instrumented ingress.
local traceparent = os.getenv("BENCH_TRACEPARENT")

function init(args)
   mode = args[1]
   local nthreads = tonumber(args[2])
   if traceparent then wrk.headers["traceparent"] = traceparent end
   if mode == "get" then
      if args[3] then wrk.headers["Cookie"] = args[3] end
   elseif mode == "post" then
      posts, pos = {}, 1
      for i, line in ipairs(lines(args[3])) do
         if (i - 1) % nthreads == tid then table.insert(posts, line) end
      end
      wrk.method = "POST"
   elseif mode == "flash" then
      pool = lines(args[3])
      local buyers = lines(args[4])
      buyer = buyers[tid % #buyers + 1]
      done_file = args[5]
      math.randomseed(tid * 7919 + 1)
   end
end

function request()
   if first == 0 then first = now() end
   if mode == "post" then
      local line = posts[pos]
      if line == nil then
         exhausted = 1
         wrk.thread:stop()
         line = posts[#posts]
      else
         pos = pos + 1
      end
      local ticket, cookie = line:match("([^\t]+)\t(.+)")
      return wrk.format(nil, "/api/orders",
         { ["Cookie"] = cookie, ["Content-Type"] = "application/json", ["traceparent"] = traceparent },
         '{"ticketId":"' .. ticket .. '"}')
   elseif mode == "flash" then
      if #pool == 0 then
         wrk.thread:stop()
         current = nil
         return wrk.format("GET", "/healthz")
      end
      local i = math.random(#pool)
      current = i
      return wrk.format("POST", "/api/orders", { ["Cookie"] = buyer, ["Content-Type"] = "application/json" },
         '{"ticketId":"' .. pool[i] .. '"}')
   end
   return wrk.format()
end

function response(status, headers, body)
   if status >= 200 and status < 300 then c2xx = c2xx + 1 end
   if status == 201 then
      c201 = c201 + 1
      last201 = now()
   elseif status == 400 then
      c400 = c400 + 1
      if body:find("already reserved", 1, true) then c_reserved = c_reserved + 1 end
   elseif status >= 500 then
      c5xx = c5xx + 1
      if status == 503 then c503 = c503 + 1 end
   elseif status >= 300 or status < 200 then
      c_other = c_other + 1
   end
   -- One connection per thread in flash mode, so this answer is for the ticket just asked for:
   -- taken (by us or by someone else), it leaves this buyer's pool.
   if mode == "flash" and current ~= nil and (status == 201 or status == 400) then
      pool[current] = pool[#pool]
      pool[#pool] = nil
      current = nil
      if #pool == 0 then
         local f = io.open(done_file, "a")
         f:write(tid, "\n")
         f:close()
      end
   end
end

function done(summary, latency, requests)
   local out = {
      requests = summary.requests,
      duration_s = summary.duration / 1e6,
      socket_errors = summary.errors.connect + summary.errors.read + summary.errors.write
          + summary.errors.timeout,
      p50_ms = latency:percentile(50) / 1000,
      p99_ms = latency:percentile(99) / 1000,
   }
   local sums = { c2xx = 0, c201 = 0, c400 = 0, c_reserved = 0, c5xx = 0, c503 = 0, c_other = 0, exhausted = 0 }
   local first_request, last_201 = nil, 0
   for _, thread in ipairs(threads) do
      for name, value in pairs(sums) do sums[name] = value + thread:get(name) end
      local f = thread:get("first")
      if f > 0 and (first_request == nil or f < first_request) then first_request = f end
      last_201 = math.max(last_201, thread:get("last201"))
   end
   local parts = {}
   for name, value in pairs(out) do table.insert(parts, string.format('"%s": %.6f', name, value)) end
   for name, value in pairs(sums) do table.insert(parts, string.format('"%s": %d', name, value)) end
   table.insert(parts, string.format('"first_request": %.6f', first_request or 0))
   table.insert(parts, string.format('"last_201": %.6f', last_201))
   io.write("BENCH_JSON {" .. table.concat(parts, ", ") .. "}\n")
end
