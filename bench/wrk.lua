-- wrk script for scripts/bench. Arguments (after `--`):
--   <method> <body file or -> <tokens file or -> <offset> [<header line>...]
-- With a tokens file (one token per line) every request carries the next token of the list as
-- `Authorization: Bearer <token>`, starting at <offset> and cycling; the requests are formatted once in
-- init() so that request() only returns a prepared string. Without one, the request is static (wrk's
-- fast path: no Lua per request). done() prints one JSON line that bench.py reads.

local prepared = nil
local next_index = 1

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

function init(args)
  local method, body_file, tokens_file, offset = args[1], args[2], args[3], tonumber(args[4]) or 0
  wrk.method = method
  if body_file ~= "-" then
    wrk.body = read_file(body_file)
  end
  for i = 5, #args do
    local name, value = args[i]:match("^([^:]+):%s*(.*)$")
    wrk.headers[name] = value
  end
  if tokens_file ~= "-" then
    prepared = {}
    local headers = {}
    for k, v in pairs(wrk.headers) do headers[k] = v end
    for token in io.lines(tokens_file) do
      if #token > 0 then
        headers["Authorization"] = "Bearer " .. token
        prepared[#prepared + 1] = wrk.format(nil, nil, headers)
      end
    end
    assert(#prepared > 0, "no tokens in " .. tokens_file)
    next_index = (offset % #prepared) + 1
    -- defining request() makes wrk call it for every request
    request = function()
      local r = prepared[next_index]
      next_index = next_index + 1
      if next_index > #prepared then next_index = 1 end
      return r
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"min": %d, "mean": %.1f, "p50": %d, "p90": %d, "p99": %d, "p999": %d, "max": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max))
end
