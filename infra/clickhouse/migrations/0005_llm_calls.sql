-- 0005 llm_calls: one row per model call, for cost and latency accounting.
-- call_id is generated once per call by the caller (UUID) and reused on retry of
-- the insert, and created_at/created_at_ms are fixed at call time, so a retried
-- insert produces an identical sorting key and ReplacingMergeTree drops it.
-- created_at_ms: exact call time in epoch ms (18.16 has no DateTime64).
-- outcome: 'ok', 'error', 'timeout', 'refused', ... (free-form String).
CREATE TABLE IF NOT EXISTS llm_calls
(
    call_id             String,
    agent               String,
    model               String,
    input_tokens        UInt32,
    output_tokens       UInt32,
    cache_read_tokens   UInt32,
    cache_write_tokens  UInt32,
    cost_usd            Float64,
    latency_ms          UInt32,
    prompt_hash         String,
    outcome             String,
    created_at          DateTime('UTC'),
    created_at_ms       UInt64
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(created_at)
ORDER BY (agent, created_at, call_id)
SETTINGS index_granularity = 8192;
