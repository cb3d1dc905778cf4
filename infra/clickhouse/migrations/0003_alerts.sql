-- 0003 alerts: one row per alert raised from one or more findings.
-- alert_id is deterministic (hash of the sorted finding_ids).
-- window_start = min(window_start) of the contributing findings: deterministic,
-- so it is safe in the sorting key and partition (created_at is not).
-- model: model id used for the analysis, or 'rules-only'.
-- version: writer's epoch milliseconds at write time (latest write wins).
CREATE TABLE IF NOT EXISTS alerts
(
    alert_id            String,
    finding_ids         Array(String),
    symbol              String,
    portfolio_id        String,
    severity            Enum8('info' = 1, 'low' = 2, 'medium' = 3, 'high' = 4, 'critical' = 5),
    window_start        DateTime('UTC'),
    analysis            String,
    recommended_action  String,
    model               String,
    created_at          DateTime('UTC'),
    version             UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (portfolio_id, window_start, alert_id)
SETTINGS index_granularity = 8192;
