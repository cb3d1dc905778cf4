-- 0001 schema_migrations: one row per applied migration file.
-- Portable: ClickHouse 18.16 (HTTP server) and chdb 26.x.
-- The runner bootstraps this file unconditionally (IF NOT EXISTS), then records it.
-- ReplacingMergeTree keyed by version, so recording a migration twice is harmless.
-- Read applied versions with: SELECT version, name, checksum FROM schema_migrations FINAL ORDER BY version
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version     UInt32,
    name        String,
    checksum    String,
    applied_at  DateTime('UTC')
)
ENGINE = ReplacingMergeTree(applied_at)
ORDER BY version;
