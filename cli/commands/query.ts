/**
 * `agent-streams findings|alerts|digest`: the named ClickHouse queries as commands, printed as a table, JSON or
 * Markdown. Every read goes through FINAL: a row written twice counts once.
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../../runtime/config/index.ts';
import { openClickHouse } from '../../sinks/clickhouse/client.ts';
import { namedQuerySql, type NamedQueryName } from '../../sinks/clickhouse/queries.ts';
import { usageError, wholeNumber } from '../args.ts';
import { checkFormat, formatOption, formatRows, type Row } from '../format.ts';
import type { Command } from '../main.ts';

/**
 * Digest rows as every command prints them: the period a digest covers starts at `window_start`, whether the
 * digest is hourly (production) or per minute (`demo`); the table's column is still `hour_start`.
 */
export function digestRows(rows: readonly Row[]): Row[] {
  return rows.map((row) =>
    Object.fromEntries(Object.entries(row).map(([k, v]) => [k === 'hour_start' ? 'window_start' : k, v])),
  );
}

export async function runNamedQuery(name: NamedQueryName, params: Record<string, unknown>): Promise<Row[]> {
  const client = openClickHouse(loadConfig(), { role: 'reader' });
  try {
    return await (await client.query({ query: namedQuerySql(name, params), format: 'JSONEachRow' })).json<Row>();
  } finally {
    await client.close();
  }
}

const options = {
  portfolio: { type: 'string' },
  since: { type: 'string', default: '24h' },
  'min-severity': { type: 'string', default: 'info' },
  limit: { type: 'string', default: '50' },
  format: formatOption,
} as const;

function queryCommand(kind: 'findings' | 'alerts' | 'digest'): Command {
  return {
    summary: `Show ${kind === 'digest' ? 'digests' : kind} from ClickHouse (--portfolio, --since 2h, --min-severity, --format table|json|markdown)`,
    usage: `${kind} [--portfolio ID] [--since 2h] [--min-severity medium] [--limit N] [--format table|json|markdown]`,
    options,
    async run(args) {
      const { values } = parseArgs({ args, options });
      const since = /^(\d+)([smhd])$/.exec(values.since);
      if (!since) throw usageError(`--since takes a duration such as 30m, 2h or 7d, got "${values.since}"`);
      const seconds = Number(since[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[since[2] as 's' | 'm' | 'h' | 'd'];
      const from = Math.max(0, Math.floor(Date.now() / 1000) - seconds);
      const to = Math.floor(Date.now() / 1000) + 86400;
      const limit = wholeNumber('limit', values.limit, 1, 100_000);
      const format = checkFormat(values.format, ['table', 'json', 'markdown']);
      if (!['info', 'low', 'medium', 'high', 'critical'].includes(values['min-severity']))
        throw usageError('--min-severity is info, low, medium, high or critical');
      let rows: Row[];
      if (kind === 'findings') {
        rows = values.portfolio
          ? await runNamedQuery('findingsByPortfolio', {
              portfolio: values.portfolio,
              from,
              to,
              minSeverity: values['min-severity'],
              limit,
            })
          : await runNamedQuery('recentFindings', { from, minSeverity: values['min-severity'], limit });
      } else if (kind === 'alerts') {
        if (!values.portfolio) throw usageError('alerts needs --portfolio ID');
        rows = await runNamedQuery('alertsByPortfolio', { portfolio: values.portfolio, from, to, limit });
      } else {
        rows = digestRows(
          values.portfolio
            ? await runNamedQuery('digestsByPortfolio', { portfolio: values.portfolio, from, to })
            : await runNamedQuery('recentDigests', { from, limit }),
        );
      }
      console.log(formatRows(rows, format));
      return 0;
    },
  };
}

export const findingsCommand = queryCommand('findings');
export const alertsCommand = queryCommand('alerts');
export const digestCommand = queryCommand('digest');
