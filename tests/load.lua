-- wrk script for tests/load.sh. LOAD_MODE picks the request: `describe` (GET the newsletter
-- form), `events1` / `events10` (POST /v1/events with one or ten new events, every event id
-- unique), `submit` (POST the newsletter form with a unique address). Ends with one LOADRESULT
-- line the script reads.
local mode = os.getenv("LOAD_MODE") or "describe"
local run = os.getenv("LOAD_RUN") or tostring(os.time())
local json = { ["Content-Type"] = "application/json" }
local threads = 0
local counter = 0

-- Runs in the main state before each thread starts: gives each thread its own number, so ids made
-- by different threads never collide.
function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end

local function events(n)
  local parts = {}
  for i = 1, n do
    parts[i] = string.format(
      '{"event_id":"load-%s-%d-%d-%d","type":"page_view","anonymous_id":"anon-%s-%d-%d",'
        .. '"properties":{"url":"https://shop.example/p/%d","page_type":"product"}}',
      run, thread_id, counter, i, run, thread_id, counter, i)
  end
  return '{"events":[' .. table.concat(parts, ",") .. "]}"
end

function request()
  counter = counter + 1
  if mode == "describe" then
    return wrk.format("GET", "/v1/forms/newsletter")
  elseif mode == "submit" then
    local body = string.format(
      '{"email":"load-%s-%d-%d@example.com","first_name":"Load","consent":"on"}', run, thread_id, counter)
    return wrk.format("POST", "/v1/forms/newsletter/submissions", json, body)
  elseif mode == "events1" then
    return wrk.format("POST", "/v1/events", json, events(1))
  elseif mode == "events10" then
    return wrk.format("POST", "/v1/events", json, events(10))
  end
  error("unknown LOAD_MODE " .. mode)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("LOADRESULT requests=%d seconds=%.3f p50_us=%d p99_us=%d non2xx=%d errors=%d\n",
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
