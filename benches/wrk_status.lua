-- wrk script for benches/http.sh and benches/overload.sh.
--
-- Counts answers by status (2xx, 429, 503, 504, other) across wrk's threads and prints
-- one machine-readable line at the end:
--   WRK requests=… duration_us=… s2xx=… s429=… s503=… s504=… sother=…
--       timeouts=… connect_errors=… read_errors=… p50_us=… p99_us=… max_us=…
-- Latency percentiles are wrk's own, over every answer (refusals included).
--
-- WRK_THINK_MS (environment): a pause before each request on a connection, drawn from
-- an exponential distribution of that mean (capped at 5×), so that each connection
-- offers about 1000 / (think + latency) requests per second and the connections do
-- not fall into step (with a fixed pause, they arrive in bursts).

local think = tonumber(os.getenv("WRK_THINK_MS") or "0") or 0
local threads = {}
local keys = { "s2xx", "s429", "s503", "s504", "sother" }

function setup(thread)
   table.insert(threads, thread)
   thread:set("seed", #threads)
end

function init(args)
   s2xx, s429, s503, s504, sother = 0, 0, 0, 0, 0
   math.randomseed(os.time() * 1000 + (seed or 0))
end

if think > 0 then
   function delay()
      local d = -think * math.log(1 - math.random())
      return math.floor(math.min(d, 5 * think) + 0.5)
   end
end

function response(status, headers, body)
   if status >= 200 and status < 300 then
      s2xx = s2xx + 1
   elseif status == 429 then
      s429 = s429 + 1
   elseif status == 503 then
      s503 = s503 + 1
   elseif status == 504 then
      s504 = s504 + 1
   else
      sother = sother + 1
   end
end

function done(summary, latency, requests)
   local total = {}
   for _, k in ipairs(keys) do
      total[k] = 0
      for _, t in ipairs(threads) do
         total[k] = total[k] + (t:get(k) or 0)
      end
   end
   io.write(string.format(
      "WRK requests=%d duration_us=%d s2xx=%d s429=%d s503=%d s504=%d sother=%d "
         .. "timeouts=%d connect_errors=%d read_errors=%d p50_us=%d p99_us=%d max_us=%d\n",
      summary.requests, summary.duration, total.s2xx, total.s429, total.s503, total.s504,
      total.sother, summary.errors.timeout, summary.errors.connect, summary.errors.read,
      latency:percentile(50), latency:percentile(99), latency.max))
end
