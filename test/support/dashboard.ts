/**
 * Linting the Grafana dashboard (infra/grafana/agent-streams.json): its shape, and its PromQL — every expression
 * parses (promtool, or a running Prometheus) and names only metrics the runtime exports or the rules record.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { createMetrics } from '../../runtime/observability/metrics.ts';

const root = join(import.meta.dirname, '../..');
export const DASHBOARD_FILE = join(root, 'infra/grafana/agent-streams.json');
export const RULES_FILE = join(root, 'infra/prometheus/rules.yml');

export interface PanelQuery {
  panel: string;
  refId: string;
  expr: string;
}

interface Panel {
  id?: unknown;
  type?: unknown;
  title?: unknown;
  gridPos?: { x?: unknown; y?: unknown; w?: unknown; h?: unknown };
  targets?: Array<{ refId?: unknown; expr?: unknown }>;
}

const PANEL_TYPES = new Set(['timeseries', 'stat', 'gauge', 'table', 'bargauge', 'text', 'row']);

/** Shape problems, in words; empty when the dashboard is one Grafana can import. */
export function dashboardProblems(dashboard: unknown): string[] {
  const problems: string[] = [];
  const d = dashboard as {
    title?: unknown;
    uid?: unknown;
    schemaVersion?: unknown;
    panels?: unknown;
    templating?: { list?: unknown };
  };
  if (typeof d !== 'object' || d === null) return ['the dashboard is not a JSON object'];
  if (typeof d.title !== 'string' || d.title === '') problems.push('title must be a non-empty string');
  if (typeof d.uid !== 'string' || !/^[A-Za-z0-9_-]{1,40}$/.test(d.uid))
    problems.push('uid must be 1-40 characters [A-Za-z0-9_-]');
  if (!Number.isInteger(d.schemaVersion) || (d.schemaVersion as number) < 30)
    problems.push('schemaVersion must be a whole number >= 30');
  if (!Array.isArray(d.templating?.list)) problems.push('templating.list must be an array');
  if (!Array.isArray(d.panels) || d.panels.length === 0) return [...problems, 'panels must be a non-empty array'];
  const ids = new Set<unknown>();
  const cells = new Set<string>();
  for (const [i, panel] of (d.panels as Panel[]).entries()) {
    const name = `panel ${i} (${String(panel.title)})`;
    if (!Number.isInteger(panel.id)) problems.push(`${name}: id must be a whole number`);
    else if (ids.has(panel.id)) problems.push(`${name}: id ${String(panel.id)} is used twice`);
    ids.add(panel.id);
    if (typeof panel.type !== 'string' || !PANEL_TYPES.has(panel.type))
      problems.push(`${name}: type must be one of ${[...PANEL_TYPES].join(', ')}`);
    if (typeof panel.title !== 'string' || panel.title === '')
      problems.push(`${name}: title must be a non-empty string`);
    const { x, y, w, h } = panel.gridPos ?? {};
    if (
      ![x, y, w, h].every(Number.isInteger) ||
      (x as number) < 0 ||
      (w as number) < 1 ||
      (x as number) + (w as number) > 24 ||
      (h as number) < 1
    ) {
      problems.push(`${name}: gridPos needs whole x, y, w, h within the 24-column grid`);
    } else {
      for (let row = y as number; row < (y as number) + (h as number); row += 1) {
        for (let col = x as number; col < (x as number) + (w as number); col += 1) {
          if (cells.has(`${row}:${col}`)) {
            problems.push(`${name}: overlaps another panel at row ${row}, column ${col}`);
            row = Infinity;
            break;
          }
          cells.add(`${row}:${col}`);
        }
      }
    }
    if (panel.type === 'row' || panel.type === 'text') continue;
    if (!Array.isArray(panel.targets) || panel.targets.length === 0)
      problems.push(`${name}: needs at least one target`);
    const refIds = new Set<unknown>();
    for (const target of panel.targets ?? []) {
      if (typeof target.refId !== 'string' || refIds.has(target.refId))
        problems.push(`${name}: each target needs its own refId`);
      refIds.add(target.refId);
      if (typeof target.expr !== 'string' || target.expr.trim() === '')
        problems.push(`${name}: target ${String(target.refId)} has no PromQL expr`);
    }
  }
  return problems;
}

export function dashboardQueries(dashboard: unknown): PanelQuery[] {
  const panels = ((dashboard as { panels?: Panel[] }).panels ?? []) as Panel[];
  return panels.flatMap((panel) =>
    (panel.targets ?? []).flatMap((t) =>
      typeof t.expr === 'string' ? [{ panel: String(panel.title), refId: String(t.refId), expr: t.expr }] : [],
    ),
  );
}

/** The expression as Prometheus receives it from Grafana: intervals and the application variable filled in. */
export function concrete(expr: string): string {
  return expr
    .replaceAll(/\$__rate_interval|\$\{__rate_interval\}|\$__interval|\$\{__interval\}|\$__range|\$\{__range\}/g, '1m')
    .replaceAll(/\$application|\$\{application(:[a-z]+)?\}/g, '.*');
}

const KEYWORDS = new Set([
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'and',
  'or',
  'unless',
  'bool',
  'offset',
  'inf',
  'nan',
]);

/** Metric names an expression selects (everything that is not a function, keyword, label or literal). */
export function metricNamesIn(expr: string): string[] {
  const bare = concrete(expr)
    .replaceAll(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, ' ')
    .replaceAll(/\{[^}]*\}/g, ' ')
    .replaceAll(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replaceAll(/\[[^\]]*\]/g, ' ');
  const names = new Set<string>();
  for (const match of bare.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const token = match[0];
    const next = bare.slice(match.index + token.length).trimStart();
    if (next.startsWith('(') || KEYWORDS.has(token.toLowerCase())) continue;
    if (/^\d/.test(token) || /^(\d+[smhdwy])+$/.test(token)) continue;
    names.add(token);
  }
  return [...names];
}

/** What the runtime's registry declares (histograms as their series), what the rules record, and `up`. */
export function exportedMetricNames(): Set<string> {
  const names = new Set<string>(['up']);
  const metrics = createMetrics({ processMetrics: true });
  for (const metric of metrics.registry.getMetricsAsArray()) {
    const type = (metric as unknown as { type?: string }).type;
    if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(`${metric.name}${suffix}`);
    else names.add(metric.name);
  }
  const rules = parseYaml(readFileSync(RULES_FILE, 'utf8')) as { groups: Array<{ rules: Array<{ record?: string }> }> };
  for (const group of rules.groups) for (const rule of group.rules) if (rule.record) names.add(rule.record);
  return names;
}

/**
 * Parses every expression with `promtool check rules` (each as a recording rule): Prometheus' own parser, offline.
 * Returns promtool's complaint, or undefined when all parse.
 */
export function promtoolParseProblems(queries: PanelQuery[]): string | undefined {
  const dir = mkdtempSync(join(tmpdir(), 'dashboard-promql-'));
  try {
    const rules = queries
      .map((q, i) => `      - record: dashboard:query_${i}\n        expr: ${JSON.stringify(concrete(q.expr))}\n`)
      .join('');
    const file = join(dir, 'dashboard.rules.yml');
    writeFileSync(file, `groups:\n  - name: dashboard\n    rules:\n${rules}`);
    execFileSync('promtool', ['check', 'rules', file], { stdio: 'pipe', encoding: 'utf8' });
    return undefined;
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    return `${stdout ?? ''}${stderr ?? ''}`.trim() || String(error);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
