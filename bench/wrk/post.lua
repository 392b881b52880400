-- wrk script for the benchmark: POSTs JSON bodies, one per line of the file $BENCH_BODIES,
-- cycling through them, to the URL's path; prints a machine-readable summary at the end.
--   BENCH_BODIES=bodies.jsonl wrk -t1 -c8 -d10s --latency -s bench/wrk/post.lua http://127.0.0.1:PORT/predict

local bodies = {}
local n = 0
local i = 0

local function load_bodies()
  local path = os.getenv("BENCH_BODIES")
  assert(path, "BENCH_BODIES is not set")
  local f = assert(io.open(path, "r"))
  for line in f:lines() do
    if #line > 0 then
      n = n + 1
      bodies[n] = line
    end
  end
  f:close()
  assert(n > 0, "no bodies in " .. path)
end

init = function(args)
  load_bodies()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  -- start each thread at a different offset
  i = math.random(n) - 1
end

request = function()
  i = (i % n) + 1
  return wrk.format(nil, nil, nil, bodies[i])
end

done = function(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_s": %.3f, "rps": %.2f, "bytes": %d, ' ..
    '"errors_connect": %d, "errors_read": %d, "errors_write": %d, "errors_status": %d, "errors_timeout": %d, ' ..
    '"lat_mean_ms": %.3f, "lat_p50_ms": %.3f, "lat_p75_ms": %.3f, "lat_p90_ms": %.3f, "lat_p99_ms": %.3f, "lat_max_ms": %.3f}\n',
    summary.requests, secs, summary.requests / secs, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean / 1000, latency:percentile(50) / 1000, latency:percentile(75) / 1000,
    latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
