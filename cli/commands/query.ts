/**
 * `agent-streams findings|alerts|digest`: the named ClickHouse queries as commands, printed as a table, JSON or
 * Markdown. Every read goes through FINAL: a row written twice counts once.
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../../runtime/config/index.ts';
import { openClickHouse } from '../../sinks/clickhouse/client.ts';
import { namedQuerySql, type NamedQueryName } from '../../sinks/clickhouse/queries.ts';
import { usageError, type Command } from '../main.ts';

type Row = Record<string, unknown>;

export function formatRows(rows: Row[], format: string): string {
  if (format === 'json') return JSON.stringify(rows, null, 2);
  if (rows.length === 0) return '(no rows)';
  const columns = Object.keys(rows[0]!);
  const cell = (v: unknown): string => String(v ?? '').replace(/\s+/g, ' ').slice(0, 100);
  if (format === 'markdown') {
    return [`| ${columns.join(' | ')} |`, `| ${columns.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${columns.map((c) => cell(r[c]).replaceAll('|', '\\|')).join(' | ')} |`)].join('\n');
  }
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (values: string[]): string => values.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(columns), ...rows.map((r) => line(columns.map((c) => cell(r[c]))))].join('\n');
}

export async function runNamedQuery(name: NamedQueryName, params: Record<string, unknown>): Promise<Row[]> {
  const client = openClickHouse(loadConfig(), { role: 'reader' });
  try {
    return await (await client.query({ query: namedQuerySql(name, params), format: 'JSONEachRow' })).json<Row>();
  } finally {
    await client.close();
  }
}

function queryCommand(kind: 'findings' | 'alerts' | 'digest'): Command {
  return {
    summary: `Show ${kind === 'digest' ? 'digests' : kind} from ClickHouse (--portfolio, --since 2h, --min-severity, --format table|json|markdown)`,
    usage: `${kind} [--portfolio ID] [--since 2h] [--min-severity medium] [--limit N] [--format table|json|markdown]`,
    async run(args) {
      const { values } = parseArgs({
        args,
        options: {
          portfolio: { type: 'string' },
          since: { type: 'string', default: '24h' },
          'min-severity': { type: 'string', default: 'info' },
          limit: { type: 'string', default: '50' },
          format: { type: 'string', default: 'table' },
        },
      });
      const since = /^(\d+)([smhd])$/.exec(values.since);
      if (!since) throw usageError(`--since takes a duration such as 30m, 2h or 7d, got "${values.since}"`);
      const seconds = Number(since[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[since[2] as 's' | 'm' | 'h' | 'd'];
      const from = Math.max(0, Math.floor(Date.now() / 1000) - seconds);
      const to = Math.floor(Date.now() / 1000) + 86400;
      const limit = Number(values.limit);
      if (!Number.isInteger(limit) || limit < 1) throw usageError(`--limit takes a positive whole number, got "${values.limit}"`);
      if (!['table', 'json', 'markdown'].includes(values.format)) throw usageError('--format is table, json or markdown');
      if (!['info', 'low', 'medium', 'high', 'critical'].includes(values['min-severity'])) throw usageError('--min-severity is info, low, medium, high or critical');
      let rows: Row[];
      if (kind === 'findings') {
        rows = values.portfolio
          ? await runNamedQuery('findingsByPortfolio', { portfolio: values.portfolio, from, to, minSeverity: values['min-severity'], limit })
          : await runNamedQuery('recentFindings', { from, minSeverity: values['min-severity'], limit });
      } else if (kind === 'alerts') {
        if (!values.portfolio) throw usageError('alerts needs --portfolio ID');
        rows = await runNamedQuery('alertsByPortfolio', { portfolio: values.portfolio, from, to, limit });
      } else {
        rows = values.portfolio ? await runNamedQuery('digestsByPortfolio', { portfolio: values.portfolio, from, to }) : await runNamedQuery('recentDigests', { from, limit });
      }
      console.log(formatRows(rows, values.format));
      return 0;
    },
  };
}

export const findingsCommand = queryCommand('findings');
export const alertsCommand = queryCommand('alerts');
export const digestCommand = queryCommand('digest');
