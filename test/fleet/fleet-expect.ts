/**
 * What a fleet run must show against the reference, shared by the runs that check it (the golden runs of member
 * processes, the podman-deployed fleet): the test driver's findings one to one, the planted findings, the alerts and
 * one digest per affected portfolio with the driver's counts, and an audit row per call the LLM stand-in saw.
 */
import { expect } from 'vitest';
import type { AnthropicFake } from '../fakes/anthropic.ts';
import type { Severity } from '../../processors/finding.ts';
import { plantedDifferences, type ExpectedOutput, type FleetRunResult, type Row } from './fleet-run.ts';

const byId = <T extends Row>(rows: T[], key: string): Map<string, T> => new Map(rows.map((r) => [String(r[key]), r]));
const latestById = <T extends { findingId: string }>(items: T[]): Map<string, T> =>
  new Map(items.map((f) => [f.findingId, f]));

export interface FleetExpectations {
  expectedAlertIds: string[];
  expectedDigestPortfolios: string[];
  expectFindingsAsComputed(run: FleetRunResult): void;
  expectPlanted(run: FleetRunResult): void;
  expectAlertsAndDigests(run: FleetRunResult, analysed: 'llm' | 'rules-only'): void;
  expectAuditMatchesCalls(run: FleetRunResult, fake: AnthropicFake): void;
}

/** The checks for runs whose feed ends before `hour`, against `expected` (expectedFleetOutput(hour)). */
export function fleetExpectations(hour: number, expected: ExpectedOutput): FleetExpectations {
  const expectedAlertIds = [...new Set(expected.alerts.map((a) => a.alertId))];
  const expectedDigestPortfolios = [...new Set(expected.digests.map((d) => d.portfolioId))];

  function expectFindingsAsComputed(run: FleetRunResult): void {
    // ClickHouse keeps the latest version of each id, as the driver's last record per id.
    const computed = latestById([...expected.findings, ...expected.portfolioFindings]);
    const stored = byId(run.findings, 'finding_id');
    expect(stored.size).toBe(run.findings.length); // no id twice through FINAL
    expect([...stored.keys()].sort()).toEqual([...computed.keys()].sort());
    for (const [id, f] of computed) {
      const row = stored.get(id)!;
      expect({
        agent: row.agent,
        rule: row.rule,
        symbol: row.symbol,
        portfolio: row.portfolio_id,
        severity: row.severity,
        windowStart: Number(row.window_start) * 1000,
      }).toEqual({
        agent: f.agent,
        rule: f.rule,
        symbol: f.symbol,
        portfolio: f.portfolioId,
        severity: f.severity,
        windowStart: Math.floor(f.windowStart / 1000) * 1000,
      });
    }
  }

  function expectPlanted(run: FleetRunResult): void {
    const stored = run.findings.map((f) => ({
      symbol: String(f.symbol),
      agent: String(f.agent),
      rule: String(f.rule),
      severity: f.severity as Severity,
      portfolioId: String(f.portfolio_id),
    }));
    expect(plantedDifferences(stored)).toEqual([]);
  }

  function expectAlertsAndDigests(run: FleetRunResult, analysed: 'llm' | 'rules-only'): void {
    const alerts = byId(run.alerts, 'alert_id');
    expect([...alerts.keys()].sort()).toEqual([...expectedAlertIds].sort());
    // An alert raised again for an escalated finding keeps its id; ClickHouse shows the latest, as here.
    for (const alert of new Map(expected.alerts.map((a) => [a.alertId, a])).values()) {
      const row = alerts.get(alert.alertId)!;
      expect({ portfolio: row.portfolio_id, symbol: row.symbol, severity: row.severity }).toEqual({
        portfolio: alert.portfolioId,
        symbol: alert.symbol,
        severity: alert.severity,
      });
      if (analysed === 'llm') {
        expect(row.model).not.toBe('rules-only');
        expect(String(row.analysis)).toMatch(/^Analysis of: /); // the stand-in's answer, validated and kept
      } else {
        expect(row.model).toBe('rules-only');
        expect(String(row.analysis).length).toBeGreaterThan(20);
      }
    }
    // Exactly one digest per affected portfolio for the hour, with the driver's counts.
    const hourStart = (hour - 3_600_000) / 1000;
    const digests = run.digests.filter((d) => Number(d.hour_start) === hourStart);
    expect(digests.map((d) => d.portfolio_id).sort()).toEqual([...expectedDigestPortfolios].sort());
    expect(run.digests).toHaveLength(digests.length);
    for (const d of expected.digests) {
      const row = digests.find((r) => r.portfolio_id === d.portfolioId)!;
      expect({ findings: Number(row.finding_count), alerting: Number(row.alert_count) }).toEqual({
        findings: d.findingCount,
        alerting: d.alertCount,
      });
      // The digest, built from the stream, says what ClickHouse says about that portfolio's hour.
      expect(Number(row.finding_count)).toBe(
        run.findings.filter((f) => f.portfolio_id === d.portfolioId && Number(f.window_start) >= hourStart).length,
      );
      expect(Number(row.alert_count)).toBe(
        run.alerts.filter((a) => a.portfolio_id === d.portfolioId && Number(a.window_start) >= hourStart).length,
      );
      if (analysed === 'llm') expect(row.model).not.toBe('rules-only');
      else expect(row.model).toBe('rules-only');
    }
  }

  /** Every HTTP call the stand-in saw has its audit row, and every audit row of a sent call has its HTTP call. */
  function expectAuditMatchesCalls(run: FleetRunResult, fake: AnthropicFake): void {
    const messages = fake.calls.filter((c) => c.method === 'POST' && c.path === '/v1/messages');
    const batchItems = fake.calls
      .filter((c) => c.method === 'POST' && c.path === '/v1/messages/batches')
      .reduce((n, c) => n + ((c.body as { requests: unknown[] }).requests?.length ?? 0), 0);
    const sent = run.llmCalls.filter(
      (r) => !['budget-exhausted', 'circuit-open', 'rules-only'].includes(String(r.outcome)),
    );
    expect(sent.filter((r) => r.agent === 'digest')).toHaveLength(batchItems);
    expect(sent.filter((r) => r.agent !== 'digest')).toHaveLength(messages.length);
    const okInput = messages
      .filter((c) => c.status === 200)
      .reduce((n, c) => n + ((c.response as { usage?: { input_tokens: number } }).usage?.input_tokens ?? 0), 0);
    const auditedInput = sent
      .filter((r) => r.agent !== 'digest' && (r.outcome === 'ok' || r.outcome === 'invalid-output'))
      .reduce((n, r) => n + Number(r.input_tokens), 0);
    expect(auditedInput).toBe(okInput);
  }

  return {
    expectedAlertIds,
    expectedDigestPortfolios,
    expectFindingsAsComputed,
    expectPlanted,
    expectAlertsAndDigests,
    expectAuditMatchesCalls,
  };
}
