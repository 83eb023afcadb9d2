-- wrk: POST a realistic GBG webhook with Basic auth, a distinct instance id each time.
-- Optional: BENCH_DELAY_MS spaces each connection's requests (half-load runs).
local counter = 0
prefix = "run"
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")

function setup(thread)
  counter = counter + 1
  thread:set("prefix", string.format("%s-t%d", os.getenv("BENCH_RUN") or "run", counter))
end

function init(args)
  counter = 0
end

function request()
  counter = counter + 1
  local id = string.format("%s-%d", prefix, counter)
  local body = string.format(
    '{"instanceId":"%s","status":"Completed","message":"Age check finished",' ..
    '"journey":{"id":"age-check","version":"3"},"timestamp":"2026-11-25T10:00:00Z"}', id)
  return wrk.format("POST", "/webhooks/gbg", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = os.getenv("BENCH_AUTH"),
  }, body)
end

function delay()
  return delay_ms
end

function done(summary, latency, requests)
  io.write(string.format("BENCH requests=%d errors=%d non2xx=%d duration_us=%d p50_us=%d p99_us=%d mean_us=%.1f\n",
    summary.requests, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, summary.duration, latency:percentile(50), latency:percentile(99), latency.mean))
end
