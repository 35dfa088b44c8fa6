-- wrk script of the benchmarks: `wrk ... -s bench.lua URL -- MODE THREADS [FILE [ARG]]`; the headers of wrk's
-- -H options (a cookie, a traceparent) go on every request.
--   get                 GET the URL
--   post  FILE [KEYS]   POST /api/orders, a line "ticketId<TAB>cookie" a request, each once: thread k of THREADS
--                       takes lines k, k + THREADS, ...; KEYS "new-key": each under an Idempotency-Key of its own,
--                       "replay": the thread's first line again and again, under one key
--   flash FILE DONE     the same, one buyer a thread (-c equal to -t), a line settled by its answer, 201 or 400;
--                       a thread whose lines are spent appends a line to the file DONE
-- done() prints one line "BENCH_JSON {...}": answers by status, latency percentiles, sell-out times.
local ffi = require("ffi")
ffi.cdef("typedef struct { long sec; long nsec; } bench_ts; int clock_gettime(int, bench_ts *);")
local ts = ffi.new("bench_ts")
local function now() -- CLOCK_REALTIME: comparable between threads
   ffi.C.clock_gettime(0, ts)
   return tonumber(ts.sec) + tonumber(ts.nsec) / 1e9
end

local threads = {}
function setup(thread)
   thread:set("tid", #threads)
   table.insert(threads, thread)
end

-- Each thread has its own Lua state: done() adds up these globals of every thread.
counts, first, last201 = { reserved = 0 }, 0, 0
local mode, keys, done_file, posts, pos = nil, nil, nil, {}, 1

function init(args)
   mode, keys, done_file = args[1], args[1] == "post" and args[4], args[1] == "flash" and args[4]
   if mode == "get" then return end
   local i = 0
   for line in io.lines(args[3]) do
      if i % tonumber(args[2]) == tid then table.insert(posts, line) end
      i = i + 1
   end
   if keys == "replay" then posts = { posts[1] } end
end

function request()
   if first == 0 then first = now() end
   if mode == "get" then return wrk.format() end
   local line = posts[pos]
   if line == nil then -- this thread's lines are spent: a harmless last request
      if done_file then
         local f = io.open(done_file, "a")
         f:write(tid, "\n")
         f:close()
         done_file = nil
      end
      wrk.thread:stop()
      return wrk.format("GET", "/healthz")
   end
   if mode == "post" and keys ~= "replay" then pos = pos + 1 end
   local ticket, cookie = line:match("([^\t]+)\t(.+)")
   local headers = { Cookie = cookie, ["Content-Type"] = "application/json" }
   headers["Idempotency-Key"] = keys == "new-key" and ticket or keys or nil
   for name, value in pairs(wrk.headers) do headers[name] = headers[name] or value end
   return wrk.format("POST", "/api/orders", headers, '{"ticketId":"' .. ticket .. '"}')
end

function response(status, headers, body)
   counts[status] = (counts[status] or 0) + 1
   if status == 201 then last201 = now() end
   if status == 400 and body:find("already reserved", 1, true) then counts.reserved = counts.reserved + 1 end
   -- A flash buyer's one connection: this answer is for its current ticket, which a 201 or a 400 (another buyer
   -- holds it) settles; wrk also asks thread 0 for a request it never sends, to check the script.
   if mode == "flash" and (status == 201 or status == 400) then pos = pos + 1 end
end

function done(summary, latency)
   local errors, out = summary.errors, { requests = summary.requests, duration_s = summary.duration / 1e6 }
   out.p50_ms, out.p99_ms = latency:percentile(50) / 1000, latency:percentile(99) / 1000
   out.socket_errors = errors.connect + errors.read + errors.write + errors.timeout
   out.first_request, out.last_201 = math.huge, 0
   for _, thread in ipairs(threads) do -- every thread has asked for a request: wrk asks when it connects
      for key, n in pairs(thread:get("counts")) do out[key] = (out[key] or 0) + n end
      out.first_request = math.min(out.first_request, thread:get("first"))
      out.last_201 = math.max(out.last_201, thread:get("last201"))
   end
   local parts = {}
   for key, value in pairs(out) do table.insert(parts, string.format('"%s": %.6f', key, value)) end
   io.write("BENCH_JSON {" .. table.concat(parts, ", ") .. "}\n")
end
