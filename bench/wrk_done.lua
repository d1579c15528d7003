-- bench/wrk_done.lua: summary hook for wrk.
-- Only done() is defined, so wrk still sends its one pre-built request per
-- connection with keep-alive (no per-request Lua cost). At the end it writes a
-- single line "BENCHJSON {...}" that run.py picks out of wrk's stdout.
-- Latencies are in microseconds, as wrk records them.
function done(summary, latency, requests)
  local e = summary.errors
  local fields = {
    string.format('"requests":%d', summary.requests),
    string.format('"duration_us":%d', summary.duration),
    string.format('"bytes":%d', summary.bytes),
    string.format('"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}',
                  e.connect, e.read, e.write, e.status, e.timeout),
    string.format('"latency_us":{"mean":%.1f,"stdev":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d}',
                  latency.mean, latency.stdev, latency.max,
                  latency:percentile(50.0), latency:percentile(90.0),
                  latency:percentile(99.0), latency:percentile(99.9)),
  }
  io.write("BENCHJSON {" .. table.concat(fields, ",") .. "}\n")
end
