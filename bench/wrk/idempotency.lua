-- wrk script of bench/idempotency.py: `wrk ... -s idempotency.lua URL -- post THREADS FILE`.
-- FILE: one POST /api/orders a line, "ticketId<TAB>cookie<TAB>Idempotency-Key" ("-": no header);
-- thread k of THREADS takes lines k, k + THREADS, ... and starts over when they run out (a file of
-- one line is the same request again and again: replays).
-- done() prints one line "BENCH_JSON {...}" with the counts by status.
local threads, next_id = {}, 0
function setup(thread)
   thread:set("tid", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

c201, c409, c_other, c_replayed = 0, 0, 0, 0
local posts, pos

function init(args)
   local nthreads = tonumber(args[2])
   posts, pos = {}, 1
   local n = 0
   for line in io.lines(args[3]) do
      if line ~= "" then
         if n % nthreads == tid then table.insert(posts, line) end
         n = n + 1
      end
   end
   if #posts == 0 then -- fewer lines than threads: every thread sends the first
      for line in io.lines(args[3]) do
         if line ~= "" then table.insert(posts, line) break end
      end
   end
end

function request()
   local line = posts[pos]
   pos = pos % #posts + 1
   local ticket, cookie, key = line:match("([^\t]+)\t([^\t]+)\t(.+)")
   local headers = { ["Cookie"] = cookie, ["Content-Type"] = "application/json" }
   if key ~= "-" then headers["Idempotency-Key"] = key end
   return wrk.format("POST", "/api/orders", headers, '{"ticketId":"' .. ticket .. '"}')
end

function response(status, headers, body)
   if status == 201 then
      c201 = c201 + 1
      if headers["Idempotent-Replayed"] == "true" then c_replayed = c_replayed + 1 end
   elseif status == 409 then
      c409 = c409 + 1
   else
      c_other = c_other + 1
   end
end

function done(summary, latency, requests)
   local sums = { c201 = 0, c409 = 0, c_other = 0, c_replayed = 0 }
   for _, thread in ipairs(threads) do
      for name, value in pairs(sums) do sums[name] = value + thread:get(name) end
   end
   local parts = {
      string.format('"requests": %d', summary.requests),
      string.format('"duration_s": %.6f', summary.duration / 1e6),
      string.format('"socket_errors": %d', summary.errors.connect + summary.errors.read + summary.errors.write
         + summary.errors.timeout),
      string.format('"p50_ms": %.3f', latency:percentile(50) / 1000),
   }
   for name, value in pairs(sums) do table.insert(parts, string.format('"%s": %d', name, value)) end
   io.write("BENCH_JSON {" .. table.concat(parts, ", ") .. "}\n")
end
