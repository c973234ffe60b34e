-- wrk script: POST a small non-streamed chat completion (OpenAI-compatible).
-- Used by benchmarks/gateway.py: wrk -t1 -cN -dDs --latency -s benchmarks/wrk/chat.lua URL
-- The bearer token comes from $BENCH_API_KEY (LiteLLM needs its master key; the others ignore it).
wrk.method = "POST"
wrk.body = '{"model":"bench","messages":[{"role":"user","content":"hi"}],"max_tokens":16}'
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("BENCH_API_KEY")
if key ~= nil and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end
