/** The migration runner's view of a ClickHouse server reached over HTTP. */
import type { ClickHouseClient } from '@clickhouse/client';
import type { SqlEngine } from './migrate.ts';

export function httpEngine(client: ClickHouseClient): SqlEngine {
  return {
    async exec(sql) {
      await client.command({ query: sql });
    },
    async rows<T>(sql: string) {
      const result = await client.query({ query: sql, format: 'JSONEachRow' });
      return result.json<T>();
    },
  };
}
