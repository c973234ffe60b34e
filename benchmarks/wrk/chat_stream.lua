-- wrk script: POST a small streamed chat completion ("stream": true, server-sent events).
-- wrk counts a request as done when the whole chunked response has been read, so its latency is the
-- time to the last event ([DONE]), not the time to the first token.
-- Used by benchmarks/gateway.py: wrk -t1 -cN -dDs --latency -s benchmarks/wrk/chat_stream.lua URL
-- The bearer token comes from $BENCH_API_KEY (LiteLLM needs its master key; the others ignore it).
wrk.method = "POST"
wrk.body = '{"model":"bench","messages":[{"role":"user","content":"hi"}],"max_tokens":16,"stream":true}'
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("BENCH_API_KEY")
if key ~= nil and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end
