-- wrk script of the benchmarks: `wrk ... -s bench.lua URL -- MODE THREADS [FILE...]`.
--   get   [COOKIE]         GET the URL (with the cookie when given)
--   post  FILE             POST /api/orders, a line "ticketId<TAB>cookie[<TAB>Idempotency-Key]" a request ("-":
--                          no key), never reused (thread k of THREADS takes lines k, k + THREADS, ...); a file
--                          of one line is sent again and again by every thread (replays)
--   flash POOL BUYERS DONE one buyer per thread (run with -c equal to -t): reserve random tickets of POOL until
--                          this buyer has seen every one of them taken, then append a line to the file DONE
--                          (the harness stops wrk when every buyer has)
-- BENCH_TRACEPARENT in the environment: every request carries it, as behind an instrumented ingress.
-- done() prints one line "BENCH_JSON {...}": counts by status, latency percentiles, sell-out times.
local ffi = require("ffi")
ffi.cdef [[ typedef struct { long tv_sec; long tv_nsec; } bench_ts; int clock_gettime(int, bench_ts *); ]]
local ts = ffi.new("bench_ts")
local function now()
   ffi.C.clock_gettime(0, ts) -- CLOCK_REALTIME: comparable between threads
   return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
end

local COUNTS = { "c2xx", "c201", "c400", "c_reserved", "c5xx", "c503", "c_other", "c_replayed", "exhausted" }
local threads = {}
function setup(thread)
   thread:set("tid", #threads)
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
for _, name in ipairs(COUNTS) do _G[name] = 0 end
first, last201 = 0, 0
local mode, posts, pos, replay, pool, buyer, current, done_file
local traceparent = os.getenv("BENCH_TRACEPARENT")

function init(args)
   mode = args[1]
   if traceparent then wrk.headers["traceparent"] = traceparent end
   if mode == "get" and args[3] then
      wrk.headers["Cookie"] = args[3]
   elseif mode == "post" then
      local all = lines(args[3])
      posts, pos, replay = {}, 1, #all == 1
      for i, line in ipairs(all) do
         if (i - 1) % tonumber(args[2]) == tid or replay then table.insert(posts, line) end
      end
   elseif mode == "flash" then
      pool, buyer, done_file = lines(args[3]), lines(args[4]), args[5]
      buyer = buyer[tid % #buyer + 1]
      math.randomseed(tid * 7919 + 1)
   end
end

local function post(cookie, ticket, key)
   local headers = { ["Cookie"] = cookie, ["Content-Type"] = "application/json", ["traceparent"] = traceparent }
   if key ~= nil and key ~= "" and key ~= "-" then headers["Idempotency-Key"] = key end
   return wrk.format("POST", "/api/orders", headers, '{"ticketId":"' .. ticket .. '"}')
end

function request()
   if first == 0 then first = now() end
   if mode == "post" then
      local line = posts[pos]
      if line == nil then
         exhausted = 1
         wrk.thread:stop()
         line = posts[#posts]
      elseif not replay then
         pos = pos + 1
      end
      local ticket, cookie, key = line:match("([^\t]+)\t([^\t]+)\t?(.*)")
      return post(cookie, ticket, key)
   elseif mode == "flash" then
      if #pool == 0 then
         wrk.thread:stop()
         current = nil
         return wrk.format("GET", "/healthz")
      end
      current = math.random(#pool)
      return post(buyer, pool[current])
   end
   return wrk.format()
end

function response(status, headers, body)
   if status >= 200 and status < 300 then c2xx = c2xx + 1 end
   if status == 201 then
      c201, last201 = c201 + 1, now()
      -- granian sends header names in lower case, gunicorn as the application wrote them
      if (headers["idempotent-replayed"] or headers["Idempotent-Replayed"]) == "true" then c_replayed = c_replayed + 1 end
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
      pool[#pool], current = nil, nil
      if #pool == 0 then
         local f = io.open(done_file, "a")
         f:write(tid, "\n")
         f:close()
      end
   end
end

function done(summary, latency, requests)
   local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
   local parts = { string.format('"requests": %d, "duration_s": %.6f, "socket_errors": %d, "p50_ms": %.6f, '
      .. '"p99_ms": %.6f', summary.requests, summary.duration / 1e6, errors, latency:percentile(50) / 1000,
      latency:percentile(99) / 1000) }
   local first_request, last_201 = nil, 0
   for _, name in ipairs(COUNTS) do
      local sum = 0
      for _, thread in ipairs(threads) do sum = sum + thread:get(name) end
      table.insert(parts, string.format('"%s": %d', name, sum))
   end
   for _, thread in ipairs(threads) do
      local f = thread:get("first")
      if f > 0 and (first_request == nil or f < first_request) then first_request = f end
      last_201 = math.max(last_201, thread:get("last201"))
   end
   table.insert(parts, string.format('"first_request": %.6f, "last_201": %.6f', first_request or 0, last_201))
   io.write("BENCH_JSON {" .. table.concat(parts, ", ") .. "}\n")
end
