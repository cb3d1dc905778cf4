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
import { expectedFleetOutput, lastHourBoundary, runFleet, type FleetRunResult } from './fleet-run.ts';
import { fleetExpectations } from './fleet-expect.ts';

const hour = lastHourBoundary();
const expected = expectedFleetOutput(hour);
const {
  expectedAlertIds,
  expectedDigestPortfolios,
  expectFindingsAsComputed,
  expectPlanted,
  expectAlertsAndDigests,
  expectAuditMatchesCalls,
} = fleetExpectations(hour, expected);
const log = (line: string): void => console.log(line);

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
    const run = await runFleet({
      label: 'a',
      hour,
      anthropic: { baseUrl: fake.url },
      awaitAlerts: expectedAlertIds,
      awaitDigests: expectedDigestPortfolios,
      timeoutMs: 240_000,
      log,
    });
    golden = run;
    log(
      `golden: ${run.findings.length} findings, ${run.alerts.length} alerts, ${run.digests.length} digests, ${run.llmCalls.length} LLM calls audited`,
    );
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
      log(
        `crash run: ${run.kills.length} members killed (${run.kills.join(', ')}), ${run.zombies.length} frozen past the session timeout and thawed as zombies (${run.zombies.join(', ')}), ${run.wipedKeys} Redis keys wiped`,
      );
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
      const batchItems = catchUpFake.calls
        .filter((c) => c.method === 'POST' && c.path === '/v1/messages/batches')
        .reduce((n, c) => n + ((c.body as { requests: unknown[] }).requests?.length ?? 0), 0);
      log(
        `catch-up: ${run.findings.length} findings, ${run.alerts.length} alerts, ${run.digests.length} digests from ${batchItems} digest summaries (more than the digests: amended by late findings)`,
      );
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
    // A reservation is the prompt's byte count plus max_tokens (about 20,600 tokens here: the whole prompt, rule
    // book included, as if uncached), so no budget below that admits an analysis. An answered analysis settles to
    // about 600 (cache reads do not count; the first one, which writes the rule book to the cache, about 5,300), and
    // a timed-out one stays charged its whole reservation (it may have been billed). 30,000 tokens per agent type
    // and hour lets the first failures through and then refuses price-move's later analyses.
    const tokensPerHour = 30_000;
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
      log(
        `LLM failure run: outcomes ${JSON.stringify(Object.fromEntries([...new Set(outcomes)].map((o) => [o, outcomes.filter((x) => x === o).length])))}`,
      );
      expect(run.exitCodes.every((c) => c === 0)).toBe(true);
      // Every failure kind was met, and the fleet went on.
      for (const outcome of ['rate-limited', 'overloaded', 'timeout', 'invalid-output', 'ok'])
        expect(outcomes, outcome).toContain(outcome);
      // Every high finding still became its alert, with the LLM's analysis or rules-only.
      expect([...new Set(run.alerts.map((a) => String(a.alert_id)))].sort()).toEqual([...expectedAlertIds].sort());
      expect(run.alerts.some((a) => a.model === 'rules-only')).toBe(true);
      expect(run.alerts.some((a) => a.model !== 'rules-only')).toBe(true);
      // Budgets: per agent type and hour, what was spent (what the budget counts of every answered call: all but
      // cache reads) stays within the limit, and the budget did refuse some calls.
      const spent = new Map<string, number>();
      for (const r of run.llmCalls) {
        const key = `${r.agent} ${String(r.created_at).slice(0, 13)}`;
        spent.set(
          key,
          (spent.get(key) ?? 0) + Number(r.input_tokens) + Number(r.output_tokens) + Number(r.cache_write_tokens),
        );
      }
      for (const [key, tokens] of spent) expect(tokens, key).toBeLessThanOrEqual(tokensPerHour);
      expect(outcomes).toContain('budget-exhausted');
      expectAuditMatchesCalls(run, failing);
    } finally {
      await failing.close();
    }
  }, 420_000);
});
