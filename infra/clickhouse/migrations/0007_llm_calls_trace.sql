-- 0007 llm_calls: which trace a call belongs to, and which finding it served.
-- trace_id: the W3C trace id (32 hex digits) of the call's span, '' when tracing
-- was off; it joins a row to its trace in the tracing backend (docs/tracing.md).
-- finding_id: the finding an alert analysis was asked about, '' for digests. The
-- alert it became has alert_id = sha256(finding_id) and lists it in finding_ids:
--   SELECT ... FROM alerts FINAL WHERE has(finding_ids, '<finding_id>')
-- Rows written before this migration read as ''. No IF NOT EXISTS on ADD COLUMN:
-- ClickHouse 18.16 has no such clause there; schema_migrations runs it once.
ALTER TABLE llm_calls ADD COLUMN trace_id String DEFAULT '', ADD COLUMN finding_id String DEFAULT '';
