-- 0002 findings: one row per rule/agent finding, idempotent on finding_id.
-- finding_id is deterministic (hash of agent, rule, symbol, portfolio_id,
-- window_start, window_end), so re-processing a Kafka record rewrites the same id.
-- Dedup: ReplacingMergeTree(version) collapses rows with an equal sorting key
-- inside one partition, keeping the max version. portfolio_id and window_start
-- are inputs of finding_id, so the key (portfolio_id, window_start, finding_id)
-- is unique per finding_id and the partition toYYYYMM(window_start) is stable
-- for it. Read with FINAL (or argMax by version) for deduplicated results.
-- version: writer's epoch milliseconds at write time (latest write wins).
-- event_time_ms: exact event time in epoch ms (18.16 has no DateTime64).
-- Writers must send every column (18.16 JSONEachRow ignores DEFAULTs).
CREATE TABLE IF NOT EXISTS findings
(
    finding_id        String,
    agent             String,
    rule              String,
    symbol            String,
    portfolio_id      String,
    severity          Enum8('info' = 1, 'low' = 2, 'medium' = 3, 'high' = 4, 'critical' = 5),
    window_start      DateTime('UTC'),
    window_end        DateTime('UTC'),
    event_time        DateTime('UTC'),
    event_time_ms     UInt64,
    evidence          String,
    source_topic      String,
    source_partition  UInt32,
    source_offset     UInt64,
    created_at        DateTime('UTC'),
    version           UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (portfolio_id, window_start, finding_id)
SETTINGS index_granularity = 8192;
