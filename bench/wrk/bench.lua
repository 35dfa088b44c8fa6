-- wrk script of the benchmarks: `wrk ... -s bench.lua URL -- MODE THREADS [FILE...]`.
--   get   [COOKIE]         GET the URL (with the cookie when given)
--   post  FILE             POST /api/orders, a line "ticketId<TAB>cookie[<TAB>Idempotency-Key]" a request, never
--                          reused (thread k of THREADS takes lines k, k + THREADS, ...); a file of one line is sent
--                          again and again by every thread (replays)
--   flash POOL BUYERS DONE one buyer per thread (run with -c equal to -t): reserve random tickets of POOL until
--                          this buyer has seen every one of them taken, then append a line to the file DONE
--                          (the harness stops wrk when every buyer has)
-- BENCH_TRACEPARENT in the environment: every request carries it, as behind an instrumented ingress.
-- done() prints one line "BENCH_JSON {...}": answers by status, latency percentiles, sell-out times.
local ffi = require("ffi")
ffi.cdef [[ typedef struct { long tv_sec; long tv_nsec; } bench_ts; int clock_gettime(int, bench_ts *); ]]
local ts = ffi.new("bench_ts")
local function now()
   ffi.C.clock_gettime(0, ts) -- CLOCK_REALTIME: comparable between threads
   return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
end

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

-- Per-thread state (each thread has its own Lua state); wrk copies `counts` out at the end.
counts, first, last201 = { reserved = 0, replayed = 0 }, 0, 0
local mode, posts, pos, pool, buyer, current, done_file
local traceparent = os.getenv("BENCH_TRACEPARENT")

function init(args)
   mode = args[1]
   if traceparent then wrk.headers["traceparent"] = traceparent end
   if mode == "get" and args[3] then
      wrk.headers["Cookie"] = args[3]
   elseif mode == "post" then
      local all = lines(args[3])
      posts, pos = {}, 1
      for i, line in ipairs(all) do
         if (i - 1) % tonumber(args[2]) == tid or #all == 1 then table.insert(posts, line) end
      end
   elseif mode == "flash" then
      local buyers = lines(args[4])
      pool, buyer, done_file = lines(args[3]), buyers[tid % #buyers + 1], args[5]
      math.randomseed(tid * 7919 + 1)
   end
end

local function post(cookie, ticket, key)
   local headers = { ["Cookie"] = cookie, ["Content-Type"] = "application/json", ["traceparent"] = traceparent }
   if key ~= nil and key ~= "" then headers["Idempotency-Key"] = key end
   return wrk.format("POST", "/api/orders", headers, '{"ticketId":"' .. ticket .. '"}')
end

function request()
   if first == 0 then first = now() end
   if mode == "post" then
      if posts[pos] == nil then wrk.thread:stop() end -- the file ran out (this last request repeats its last line)
      local ticket, cookie, key = (posts[pos] or posts[#posts]):match("([^\t]+)\t([^\t]+)\t?(.*)")
      if #posts > 1 then pos = pos + 1 end
      return post(cookie, ticket, key)
   elseif mode == "flash" then
      current = #pool > 0 and math.random(#pool) or nil
      if current == nil then
         wrk.thread:stop()
         return wrk.format("GET", "/healthz")
      end
      return post(buyer, pool[current])
   end
   return wrk.format()
end

function response(status, headers, body)
   counts[status] = (counts[status] or 0) + 1
   if status == 201 then last201 = now() end
   -- granian sends header names in lower case, gunicorn as the application wrote them
   if (headers["idempotent-replayed"] or headers["Idempotent-Replayed"]) == "true" then
      counts.replayed = counts.replayed + 1
   end
   if status == 400 and body:find("already reserved", 1, true) then counts.reserved = counts.reserved + 1 end
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
   local total, first_request, last_201 = {}, math.huge, 0
   for _, thread in ipairs(threads) do
      for key, n in pairs(thread:get("counts")) do total[key] = (total[key] or 0) + n end
      if thread:get("first") > 0 then first_request = math.min(first_request, thread:get("first")) end
      last_201 = math.max(last_201, thread:get("last201"))
   end
   for key, n in pairs(total) do table.insert(parts, string.format('"%s": %d', key, n)) end
   if first_request == math.huge then first_request = 0 end
   table.insert(parts, string.format('"first_request": %.6f, "last_201": %.6f', first_request, last_201))
   io.write("BENCH_JSON {" .. table.concat(parts, ", ") .. "}\n")
end
