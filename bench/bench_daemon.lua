-- wrk script for bench/bench_daemon.py: POST /v1/decisions with a fixed mix of transactions,
-- each with its own transaction id (<run>-<thread>-<n>), and a JSON summary line at the end.
--
--   wrk -t1 -c8 -d10s -s bench/bench_daemon.lua http://127.0.0.1:PORT -- RUN_ID TOKEN

local mix = {
  '{"type": "purchase", "amount": "95000", "currency": "USD", "actor_id": "u-1", "actor_level": "L2", "id": "%s"}',
  '{"type": "purchase", "amount": "105000", "currency": "USD", "actor_id": "u-1", "actor_level": "L2", "id": "%s"}',
  '{"type": "purchase", "amount": "105000", "currency": "USD", "actor_id": "u-2", "actor_level": "L3", "id": "%s"}',
  '{"type": "wire", "amount": "10000", "currency": "USD", "actor_id": "u-1", "actor_level": "L3", "approver_id": "u-1", "country": "DE", "id": "%s"}',
  '{"type": "wire", "amount": "1000", "currency": "USD", "actor_id": "u-1", "actor_level": "CFO", "approver_id": "u-9", "country": "KP", "id": "%s"}',
}

local threads = {}
local next_thread = 0

function setup(thread)
  thread:set("thread_no", next_thread)
  next_thread = next_thread + 1
  table.insert(threads, thread)
end

function init(args)
  run_id = args[1] or "w"
  headers = { ["Content-Type"] = "application/json" }
  if args[2] and args[2] ~= "" then
    headers["Authorization"] = "Bearer " .. args[2]
  end
  n = 0
  prefix = run_id .. "-" .. tostring(thread_no) .. "-"
end

function request()
  n = n + 1
  local body = string.format(mix[(n % #mix) + 1], prefix .. n)
  return wrk.format("POST", "/v1/decisions", headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d,'
      .. ' "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
