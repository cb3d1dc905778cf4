/**
 * The Grafana dashboard is linted: valid JSON of the shape Grafana imports, the panels the operations team asked
 * for, and PromQL that Prometheus' own parser (promtool) accepts and that names only metrics the runtime exports.
 * The running-Prometheus check of the same expressions is in prometheus.test.ts.
 */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureTools, hostTools } from '../../infra/local/tools.ts';
import {
  concrete,
  DASHBOARD_FILE,
  dashboardProblems,
  dashboardQueries,
  exportedMetricNames,
  metricNamesIn,
  promtoolParseProblems,
} from '../support/dashboard.ts';

describe('Grafana dashboard infra/grafana/agent-streams.json', () => {
  beforeAll(() => ensureTools([hostTools.prometheus], (line) => console.log(line)), 300_000);
  const dashboard = JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8')) as { panels: Array<{ title: string }> };

  it('has the shape Grafana imports, and the panels asked for', () => {
    expect(dashboardProblems(dashboard)).toEqual([]);
    const titles = dashboard.panels.map((p) => p.title.toLowerCase());
    for (const wanted of [
      'throughput',
      'lag per processor',
      'findings by severity',
      'llm tokens',
      'llm cost',
      'dead letters',
      'ready members',
    ]) {
      expect(
        titles.some((t) => t.includes(wanted)),
        wanted,
      ).toBe(true);
    }
  });

  it('uses only metric names the runtime exports or the alert rules record', () => {
    const exported = exportedMetricNames();
    const unknown = dashboardQueries(dashboard).flatMap((q) =>
      metricNamesIn(q.expr)
        .filter((name) => !exported.has(name))
        .map((name) => `${q.panel}: ${name}`),
    );
    expect(unknown).toEqual([]);
    // Every panel query selects at least one metric (a query of constants shows nothing).
    for (const q of dashboardQueries(dashboard)) expect(metricNamesIn(q.expr).length, q.panel).toBeGreaterThan(0);
  });

  it('has PromQL that Prometheus parses', () => {
    expect(promtoolParseProblems(dashboardQueries(dashboard))).toBeUndefined();
  });

  it('would catch a misspelt metric, a broken expression and a bad layout', () => {
    const exported = exportedMetricNames();
    expect(
      metricNamesIn(
        'sum by (processor) (rate(agent_streams_records_consumd_total{application=~"$application"}[$__rate_interval]))',
      ),
    ).toEqual(['agent_streams_records_consumd_total']);
    expect(exported.has('agent_streams_records_consumd_total')).toBe(false);
    expect(
      metricNamesIn(
        'histogram_quantile(0.99, sum by (le) (rate(agent_streams_batch_duration_seconds_bucket[5m]))) > bool 1',
      ),
    ).toEqual(['agent_streams_batch_duration_seconds_bucket']);
    expect(concrete('rate(x{application=~"$application"}[$__rate_interval])')).toBe('rate(x{application=~".*"}[1m])');
    expect(
      promtoolParseProblems([
        { panel: 'broken', refId: 'A', expr: 'sum by (processor (rate(agent_streams_records_consumed_total[1m]))' },
      ]),
    ).toMatch(/parse error|unexpected/i);
    const broken = structuredClone(dashboard) as unknown as { panels: Array<{ id: number; gridPos: { x: number } }> };
    broken.panels[1]!.id = broken.panels[0]!.id;
    broken.panels[1]!.gridPos.x = 0;
    expect(dashboardProblems(broken)).toEqual([expect.stringMatching(/used twice/), expect.stringMatching(/overlaps/)]);
  });
});
