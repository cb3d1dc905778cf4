/**
 * How commands print data: `--format table` (aligned columns, long cells cut with "…") or `--format json`, the
 * same choice on every command that prints rows. Some commands add a format of their own (markdown, mermaid).
 */
import { usageError } from './args.ts';

export type Row = Record<string, unknown>;

/** The formats every data command takes; a command may add its own after these. */
export const dataFormats = ['table', 'json'] as const;

/** The `--format` flag as util.parseArgs declares it. */
export const formatOption = { type: 'string', default: 'table' } as const;

/** Checks `--format` against what a command prints; the error names the choices. */
export function checkFormat<F extends string>(value: string, allowed: readonly F[]): F {
  if (!(allowed as readonly string[]).includes(value))
    throw usageError(`--format takes ${allowed.join(', ')}, got "${value}"`);
  return value as F;
}

/** Widest cell of a table before it is cut. */
export const MAX_CELL = 100;

/**
 * One line of at most `max` characters: whitespace runs become one space; a longer text is cut at the last word
 * boundary (a space, or after a comma) in its last fifth, else mid-word, and ends with "…", so that a reader sees
 * something is missing.
 */
export function truncate(text: string, max = MAX_CELL): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  if (flat.length <= max) return flat;
  const room = flat.slice(0, max - 1);
  // A boundary is a space, or a comma (JSON values have no spaces: cut between fields, not inside one).
  const boundary = Math.max(
    room.lastIndexOf(' '),
    flat[max - 1] === ',' || flat[max - 1] === ' ' ? max - 1 : -1,
    room.lastIndexOf(',') + 1,
  );
  const cut = boundary >= Math.floor((max - 1) * 0.8) ? room.slice(0, boundary) : room;
  return `${cut.replace(/[\s,;:.]+$/, '')}…`;
}

function cellText(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'object')
    return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
  return String(value);
}

/** Rows as `table`, `json` or `markdown`. JSON keeps every value whole; the others cut long cells with "…". */
export function formatRows(rows: readonly Row[], format: string, options: { max?: number } = {}): string {
  if (format === 'json') return JSON.stringify(rows, null, 2);
  if (rows.length === 0) return '(no rows)';
  const columns = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const cell = (v: unknown): string => truncate(cellText(v), options.max ?? MAX_CELL);
  if (format === 'markdown') {
    return [
      `| ${columns.join(' | ')} |`,
      `| ${columns.map(() => '---').join(' | ')} |`,
      ...rows.map((r) => `| ${columns.map((c) => cell(r[c]).replaceAll('|', '\\|')).join(' | ')} |`),
    ].join('\n');
  }
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (values: string[]): string =>
    values
      .map((v, i) => v.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(columns), ...rows.map((r) => line(columns.map((c) => cell(r[c]))))].join('\n');
}
