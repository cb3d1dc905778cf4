-- 0004 digests: one hourly digest per portfolio.
-- digest_id is deterministic (hash of portfolio_id and hour_start).
-- version: writer's epoch milliseconds at write time (latest write wins).
CREATE TABLE IF NOT EXISTS digests
(
    digest_id      String,
    portfolio_id   String,
    hour_start     DateTime('UTC'),
    summary        String,
    finding_count  UInt32,
    alert_count    UInt32,
    model          String,
    created_at     DateTime('UTC'),
    version        UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(hour_start)
ORDER BY (portfolio_id, hour_start, digest_id)
SETTINGS index_granularity = 8192;
