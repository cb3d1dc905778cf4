-- Least-privilege users of the fleet for current ClickHouse (SQL access control, 20.x and later). Run once as an
-- administrator after `agent-streams migrate`, with the fleet's database in place of agent_streams and real
-- passwords (from your secret store) in place of the placeholders; narrow HOST ANY to your pods' network. Migrations
-- keep running as the administrator.
-- The local stack's ClickHouse 18.16 has no SQL access control: infra/local/services/clickhouse-users.ts writes the
-- same users into users.d instead (sink: readonly=0, allow_ddl=0; reader: readonly=1; both limited to the database).
-- Here the grants do the restricting; the reader's readonly = 2 still lets the client send its output settings.

-- The sink (`agent-streams sink`, and the members' LLM audit): AS_CLICKHOUSE_SINK_USER / AS_CLICKHOUSE_SINK_PASSWORD.
CREATE USER IF NOT EXISTS agent_streams_sink IDENTIFIED WITH sha256_password BY 'replace-with-the-sink-password' HOST ANY;
GRANT INSERT ON agent_streams.findings TO agent_streams_sink;
GRANT INSERT ON agent_streams.alerts TO agent_streams_sink;
GRANT INSERT ON agent_streams.digests TO agent_streams_sink;
GRANT INSERT ON agent_streams.llm_calls TO agent_streams_sink;

-- The query commands (findings, alerts, digest): AS_CLICKHOUSE_READER_USER / AS_CLICKHOUSE_READER_PASSWORD.
CREATE USER IF NOT EXISTS agent_streams_reader IDENTIFIED WITH sha256_password BY 'replace-with-the-reader-password' HOST ANY SETTINGS readonly = 2;
GRANT SELECT ON agent_streams.* TO agent_streams_reader;
