/**
 * The golden scenario on the real stack: the whole fleet (every agent and the ClickHouse sink, one member process
 * each) over a seeded feed with planted events, read back through ClickHouse.
 *
 *  1. With the LLM stand-in up: exactly the planted findings, at their documented severities, the same findings
 *     the test driver computes; an alert with an LLM analysis for every finding at or above its portfolio's alert
 *     level; one hourly digest per affected portfolio, summarised through the Message Batches API; an audit row per
 *     call the stand-in saw.
 *  2. The same run with members SIGKILLed and restarted at random: the documented queries answer exactly as (1).
 *  3. With the LLM unreachable: the same alerts and digests, rules-only.
 *
 * Each run takes about three minutes: the feed lies just before an hour boundary, and the members' wall clock is
 * shifted to reach it, so the hour's digests close by wall-clock punctuation as they would live.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fleetResponder, startAnthropicFake, type AnthropicFake } from '../fakes/anthropic.ts';
import type { Severity } from '../../processors/finding.ts';
import { expectedFleetOutput, lastHourBoundary, plantedDifferences, runFleet, type FleetRunResult, type Row } from './fleet-run.ts';

const hour = lastHourBoundary();
const expected = expectedFleetOutput(hour);
const expectedAlertIds = [...new Set(expected.alerts.map((a) => a.alertId))];
const expectedDigestPortfolios = [...new Set(expected.digests.map((d) => d.portfolioId))];
const log = (line: string): void => console.log(line);

const byId = <T extends Row>(rows: T[], key: string): Map<string, T> => new Map(rows.map((r) => [String(r[key]), r]));
const latestById = <T extends { findingId: string }>(items: T[]): Map<string, T> => new Map(items.map((f) => [f.findingId, f]));

function expectFindingsAsComputed(run: FleetRunResult): void {
  // ClickHouse keeps the latest version of each id, as the driver's last record per id.
  const computed = latestById([...expected.findings, ...expected.portfolioFindings]);
  const stored = byId(run.findings, 'finding_id');
  expect(stored.size).toBe(run.findings.length); // no id twice through FINAL
  expect([...stored.keys()].sort()).toEqual([...computed.keys()].sort());
  for (const [id, f] of computed) {
    const row = stored.get(id)!;
    expect({ agent: row.agent, rule: row.rule, symbol: row.symbol, portfolio: row.portfolio_id, severity: row.severity, windowStart: Number(row.window_start) * 1000 }).toEqual({
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
  const stored = run.findings.map((f) => ({ symbol: String(f.symbol), agent: String(f.agent), rule: String(f.rule), severity: f.severity as Severity, portfolioId: String(f.portfolio_id) }));
  expect(plantedDifferences(stored)).toEqual([]);
}

function expectAlertsAndDigests(run: FleetRunResult, analysed: 'llm' | 'rules-only'): void {
  const alerts = byId(run.alerts, 'alert_id');
  expect([...alerts.keys()].sort()).toEqual([...expectedAlertIds].sort());
  // An alert raised again for an escalated finding keeps its id; ClickHouse shows the latest, as here.
  for (const alert of new Map(expected.alerts.map((a) => [a.alertId, a])).values()) {
    const row = alerts.get(alert.alertId)!;
    expect({ portfolio: row.portfolio_id, symbol: row.symbol, severity: row.severity }).toEqual({ portfolio: alert.portfolioId, symbol: alert.symbol, severity: alert.severity });
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
    expect({ findings: Number(row.finding_count), alerting: Number(row.alert_count) }).toEqual({ findings: d.findingCount, alerting: d.alertCount });
    // The digest, built from the stream, says what ClickHouse says about that portfolio's hour.
    expect(Number(row.finding_count)).toBe(run.findings.filter((f) => f.portfolio_id === d.portfolioId && Number(f.window_start) >= hourStart).length);
    expect(Number(row.alert_count)).toBe(run.alerts.filter((a) => a.portfolio_id === d.portfolioId && Number(a.window_start) >= hourStart).length);
    if (analysed === 'llm') expect(row.model).not.toBe('rules-only');
    else expect(row.model).toBe('rules-only');
  }
}

/** Every HTTP call the stand-in saw has its audit row, and every audit row of a sent call has its HTTP call. */
function expectAuditMatchesCalls(run: FleetRunResult, fake: AnthropicFake): void {
  const messages = fake.calls.filter((c) => c.method === 'POST' && c.path === '/v1/messages');
  const batchItems = fake.calls.filter((c) => c.method === 'POST' && c.path === '/v1/messages/batches').reduce((n, c) => n + ((c.body as { requests: unknown[] }).requests?.length ?? 0), 0);
  const sent = run.llmCalls.filter((r) => !['budget-exhausted', 'circuit-open', 'rules-only'].includes(String(r.outcome)));
  expect(sent.filter((r) => r.agent === 'digest')).toHaveLength(batchItems);
  expect(sent.filter((r) => r.agent !== 'digest')).toHaveLength(messages.length);
  const okInput = messages.filter((c) => c.status === 200).reduce((n, c) => n + ((c.response as { usage?: { input_tokens: number } }).usage?.input_tokens ?? 0), 0);
  const auditedInput = sent.filter((r) => r.agent !== 'digest' && (r.outcome === 'ok' || r.outcome === 'invalid-output')).reduce((n, r) => n + Number(r.input_tokens), 0);
  expect(auditedInput).toBe(okInput);
}

describe('the market-monitoring fleet, end to end on the real stack', () => {
  let fake: AnthropicFake;
  let golden: FleetRunResult | undefined;

  beforeAll(async () => {
    fake = await startAnthropicFake({ batchPollsToComplete: 1, responder: fleetResponder });
  });
  afterAll(async () => {
    await fake?.close();
  });

  it('golden scenario: exactly the planted findings, LLM-analysed alerts for the high ones, one hourly digest per affected portfolio', async () => {
    const run = await runFleet({ label: 'a', hour, anthropic: { baseUrl: fake.url }, awaitAlerts: expectedAlertIds, awaitDigests: expectedDigestPortfolios, timeoutMs: 240_000, log });
    golden = run;
    log(`golden: ${run.findings.length} findings, ${run.alerts.length} alerts, ${run.digests.length} digests, ${run.llmCalls.length} LLM calls audited`);
    expect(run.crashed).toEqual([]);
    expect(run.exitCodes.every((c) => c === 0)).toBe(true);
    expectFindingsAsComputed(run);
    expectPlanted(run);
    expectAlertsAndDigests(run, 'llm');
    expectAuditMatchesCalls(run, fake);
  }, 420_000);

  it('crash test: members SIGKILLed and restarted at random during the scenario, some frozen past the session timeout and thawed as zombies, every Redis key of the application wiped mid-run; the ClickHouse queries answer exactly as without crashes', async () => {
    const crashFake = await startAnthropicFake({ batchPollsToComplete: 1, responder: fleetResponder });
    try {
      const run = await runFleet({
        label: 'b',
        hour,
        anthropic: { baseUrl: crashFake.url },
        chaos: { seed: 5, everyMs: 6_000, afterFeedMs: 15_000, zombieEvery: 4, wipeRedisAt: 6 },
        awaitAlerts: expectedAlertIds,
        awaitDigests: expectedDigestPortfolios,
        timeoutMs: 300_000,
        log,
      });
      log(`crash run: ${run.kills.length} members killed (${run.kills.join(', ')}), ${run.zombies.length} frozen past the session timeout and thawed as zombies (${run.zombies.join(', ')}), ${run.wipedKeys} Redis keys wiped`);
      expect(run.kills.length).toBeGreaterThanOrEqual(5);
      expect(run.zombies.length).toBeGreaterThanOrEqual(1);
      expect(run.wipedKeys).toBeGreaterThan(0); // the portfolio table and window state among them: rebuilt from Kafka
      expect(run.exitCodes.every((c) => c === 0)).toBe(true);
      expectFindingsAsComputed(run);
      expectAlertsAndDigests(run, 'llm');
      expectAuditMatchesCalls(run, crashFake);
      if (golden) {
        expect(run.findings).toEqual(golden.findings);
        expect(run.alerts).toEqual(golden.alerts);
        expect(run.digests).toEqual(golden.digests);
      }
    } finally {
      await crashFake.close();
    }
  }, 480_000);

  it('catch-up: the feed produced while the fleet was down, the fleet started after the hour closed, one agent later still; late findings amend their digests, and every digest counts what ClickHouse holds', async () => {
    const catchUpFake = await startAnthropicFake({ batchPollsToComplete: 1, responder: fleetResponder });
    try {
      // volume-spike is down until growth's digest is written: its BOLT findings then reach the closed hour late.
      const run = await runFleet({
        label: 'e',
        hour,
        catchUp: true,
        holdBack: { processor: 'volume-spike', untilDigestOf: 'growth' },
        anthropic: { baseUrl: catchUpFake.url },
        awaitAlerts: expectedAlertIds,
        awaitDigests: expectedDigestPortfolios,
        timeoutMs: 300_000,
        log,
      });
      const batchItems = catchUpFake.calls.filter((c) => c.method === 'POST' && c.path === '/v1/messages/batches').reduce((n, c) => n + ((c.body as { requests: unknown[] }).requests?.length ?? 0), 0);
      log(`catch-up: ${run.findings.length} findings, ${run.alerts.length} alerts, ${run.digests.length} digests from ${batchItems} digest summaries (more than the digests: amended by late findings)`);
      expect(run.crashed).toEqual([]);
      expect(run.exitCodes.every((c) => c === 0)).toBe(true);
      expect(batchItems).toBeGreaterThan(run.digests.length); // growth's digest was written, then amended and re-summarised
      expectFindingsAsComputed(run);
      expectAlertsAndDigests(run, 'llm');
      expectAuditMatchesCalls(run, catchUpFake);
    } finally {
      await catchUpFake.close();
    }
  }, 420_000);

  it('rules-only when the LLM is unreachable: the same alerts and digests, each saying it is rules-only', async () => {
    // A port nothing listens on: every call fails to connect, the circuit opens, the fleet keeps alerting.
    const down = await startAnthropicFake();
    const url = down.url;
    await down.close();
    const run = await runFleet({
      label: 'c',
      hour,
      anthropic: { baseUrl: url },
      env: { AS_LLM_TIMEOUT_MS: '2000' },
      awaitAlerts: expectedAlertIds,
      awaitDigests: expectedDigestPortfolios,
      timeoutMs: 300_000,
      log,
    });
    expect(run.exitCodes.every((c) => c === 0)).toBe(true);
    expectFindingsAsComputed(run);
    expectAlertsAndDigests(run, 'rules-only');
    expect(run.llmCalls.every((r) => r.outcome !== 'ok')).toBe(true);
  }, 420_000);

  it('LLM failures through the fleet: 429 with retry-after, 529, timeouts and malformed output in turn; budgets never exceeded; every high finding still alerts; the audit matches the calls', async () => {
    const failing = await startAnthropicFake({ batchPollsToComplete: 1, responder: fleetResponder });
    // Failures first, in turn, then normal answers: each analysis meets whatever comes next.
    failing.script([
      { kind: 'rate-limit', retryAfter: '1' },
      { kind: 'overloaded', retryAfter: '1' },
      { kind: 'timeout' },
      { kind: 'malformed' },
      { kind: 'malformed' },
      { kind: 'rate-limit', retryAfter: '1' },
      { kind: 'timeout' },
    ]);
    failing.scriptBatch([{ kind: 'malformed' }]);
    // A reservation is the prompt's byte count plus max_tokens (about 3,200 tokens here); an answered analysis
    // costs about 700, and a timed-out one is charged its whole reservation (it may have been billed). 10,000
    // tokens per agent type and hour lets the first failures through and then refuses price-move's later analyses.
    const tokensPerHour = 10_000;
    try {
      const run = await runFleet({
        label: 'd',
        hour,
        anthropic: { baseUrl: failing.url },
        env: { AS_LLM_TIMEOUT_MS: '2000', AS_LLM_TOKENS_PER_HOUR: String(tokensPerHour) },
        awaitAlerts: expectedAlertIds,
        awaitDigests: expectedDigestPortfolios,
        timeoutMs: 300_000,
        log,
      });
      const outcomes = run.llmCalls.map((r) => String(r.outcome));
      log(`LLM failure run: outcomes ${JSON.stringify(Object.fromEntries([...new Set(outcomes)].map((o) => [o, outcomes.filter((x) => x === o).length])))}`);
      expect(run.exitCodes.every((c) => c === 0)).toBe(true);
      // Every failure kind was met, and the fleet went on.
      for (const outcome of ['rate-limited', 'overloaded', 'timeout', 'invalid-output', 'ok']) expect(outcomes, outcome).toContain(outcome);
      // Every high finding still became its alert, with the LLM's analysis or rules-only.
      expect([...new Set(run.alerts.map((a) => String(a.alert_id)))].sort()).toEqual([...expectedAlertIds].sort());
      expect(run.alerts.some((a) => a.model === 'rules-only')).toBe(true);
      expect(run.alerts.some((a) => a.model !== 'rules-only')).toBe(true);
      // Budgets: per agent type and hour, what was spent (every token of every answered call) stays within the limit,
      // and the budget did refuse some calls.
      const spent = new Map<string, number>();
      for (const r of run.llmCalls) {
        const key = `${r.agent} ${String(r.created_at).slice(0, 13)}`;
        spent.set(key, (spent.get(key) ?? 0) + Number(r.input_tokens) + Number(r.output_tokens) + Number(r.cache_read_tokens) + Number(r.cache_write_tokens));
      }
      for (const [key, tokens] of spent) expect(tokens, key).toBeLessThanOrEqual(tokensPerHour);
      expect(outcomes).toContain('budget-exhausted');
      expectAuditMatchesCalls(run, failing);
    } finally {
      await failing.close();
    }
  }, 420_000);
});

