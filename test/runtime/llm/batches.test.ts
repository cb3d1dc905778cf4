import { describe, expect, it } from 'vitest';
import { retry } from '../../../runtime/retry.ts';
import { hourStart, InMemoryBudgetStore, inputTokenUpperBound, promptHash } from '../../../runtime/llm/index.ts';
import { digestPrompt, DIGEST_RULES_TEXT } from '../../../processors/analysis/prompts.ts';
import { type SummaryRequest as DigestRequest } from '../../../processors/analysis/analyst.ts';
import { lastUserText, type FakeMessagesRequest } from '../../fakes/anthropic.ts';
import { finding, harness } from './support.ts';

const hour = Date.UTC(2026, 0, 5, 9);

function digest(id: string, portfolioName: string): DigestRequest {
  return {
    id,
    portfolioName,
    hourStart: hour,
    findingCount: 3,
    bySeverity: { critical: 1, medium: 2 },
    topFindings: [`${portfolioName}: ACME fell 9%`, 'BETA volume 4x'],
  };
}

/** The stand-in's reply to a digest request: a valid digest naming the portfolio. */
const digestResponder = (request: FakeMessagesRequest): string => {
  const portfolio = /Portfolio: (.*)/.exec(lastUserText(request))?.[1] ?? '?';
  return JSON.stringify({ summary: `Digest for ${portfolio}.` });
};

interface BatchCreateBody {
  requests: Array<{
    custom_id: string;
    params: { model: string; max_tokens: number; system: Array<{ cache_control?: unknown }> };
  }>;
}
interface BatchLine {
  custom_id: string;
  result: {
    type: string;
    message?: {
      usage: {
        input_tokens: number;
        output_tokens: number;
        cache_creation_input_tokens: number;
        cache_read_input_tokens: number;
      };
    };
  };
}

const pollPolicy = retry({ initialMs: 1_000, maxMs: 10_000, factor: 2, jitter: 0 });

describe('summarizeDigests (Message Batches API)', () => {
  it('creates one batch, polls with backoff, matches results by id and falls back per failed request', async () => {
    const { fake, llm, audits, delays } = await harness(
      { batches: { pollPolicy } },
      { responder: digestResponder, batchPollsToComplete: 3 },
    );
    fake.scriptBatch([{ kind: 'ok' }, { kind: 'overloaded' }, { kind: 'malformed' }, { kind: 'ok' }]);
    const requests = [
      digest('growth-9', 'Growth'),
      digest('income-9', 'Income'),
      digest('tech-9', 'Tech'),
      digest('value-9', 'Value'),
    ];
    const results = await llm.summarizeDigests(requests);

    expect(results.map((r) => r.id)).toEqual(['growth-9', 'income-9', 'tech-9', 'value-9']);
    expect(results[0]).toEqual({ id: 'growth-9', summary: 'Digest for Growth.', model: 'claude-haiku-5-5' });
    expect(results[3]).toEqual({ id: 'value-9', summary: 'Digest for Value.', model: 'claude-haiku-5-5' });
    expect(results[1]).toMatchObject({ model: 'rules-only', reason: 'overloaded: overloaded_error Overloaded' });
    expect(results[1]!.summary).toBe(
      'Income, from 2026-01-05 09:00 UTC: 3 findings (1 critical, 2 medium). Most severe: Income: ACME fell 9%; BETA volume 4x.',
    );
    expect(results[2]).toMatchObject({ model: 'rules-only' });
    expect(results[2]!.reason).toMatch(/^invalid output: the reply is not a JSON object/);

    // create, three polls (1 s, 2 s, 4 s apart), then the SDK's retrieve-and-download of the results.
    expect(fake.calls.map((c) => `${c.method} ${c.path.replace(/msgbatch_\w+/, 'ID')}`)).toEqual([
      'POST /v1/messages/batches',
      'GET /v1/messages/batches/ID',
      'GET /v1/messages/batches/ID',
      'GET /v1/messages/batches/ID',
      'GET /v1/messages/batches/ID',
      'GET /v1/messages/batches/ID/results',
    ]);
    expect(delays).toEqual([1_000, 2_000, 4_000]);

    const created = fake.calls[0]!.body as BatchCreateBody;
    expect(created.requests.map((r) => r.custom_id)).toEqual(['request-0', 'request-1', 'request-2', 'request-3']);
    expect(created.requests[0]!.params).toMatchObject({ model: 'claude-haiku-5-5', max_tokens: 500 });
    expect(created.requests[0]!.params.system[1]!.cache_control).toEqual({ type: 'ephemeral' });

    // One audit record per request, with the tokens the batch reported and half-price cost.
    expect(audits.map((a) => a.outcome).sort()).toEqual(['invalid-output', 'ok', 'ok', 'overloaded']);
    expect(audits.every((a) => a.agent === 'digest' && a.model === 'claude-haiku-5-5')).toBe(true);
    const lines = fake.calls.at(-1)!.response as BatchLine[];
    for (const [i, request] of requests.entries()) {
      const audit = audits.find((a) => a.prompt_hash === promptHash(digestPrompt(request, DIGEST_RULES_TEXT)))!;
      const line = lines.find((l) => l.custom_id === `request-${i}`)!;
      const usage = line.result.message?.usage;
      if (usage === undefined) {
        expect(audit).toMatchObject({ input_tokens: 0, output_tokens: 0, cost_usd: 0 });
        continue;
      }
      expect(audit).toMatchObject({
        input_tokens: usage.input_tokens,
        output_tokens: usage.output_tokens,
        cache_write_tokens: usage.cache_creation_input_tokens,
        cache_read_tokens: usage.cache_read_input_tokens,
      });
      const fullPrice =
        (usage.input_tokens * 1 +
          usage.output_tokens * 5 +
          usage.cache_creation_input_tokens * 1.25 +
          usage.cache_read_input_tokens * 0.1) /
        1e6;
      expect(audit.cost_usd).toBeCloseTo(fullPrice / 2, 12);
    }
  });

  it('leaves requests that do not fit the budget out of the batch', async () => {
    const store = new InMemoryBudgetStore();
    const one = digest('growth-9', 'Growth');
    const worstCase = inputTokenUpperBound(digestPrompt(one, DIGEST_RULES_TEXT)) + 500;
    const { fake, llm, audits, clock } = await harness(
      { batches: { pollPolicy }, budgets: { default: { tokensPerHour: worstCase + 10 } }, budgetStore: store },
      { responder: digestResponder, batchPollsToComplete: 1 },
    );
    const results = await llm.summarizeDigests([one, digest('income-9', 'Income')]);
    expect(results[0]!.model).toBe('claude-haiku-5-5');
    expect(results[1]!.model).toBe('rules-only');
    expect(results[1]!.reason).toMatch(/^budget exhausted/);
    expect((fake.calls[0]!.body as BatchCreateBody).requests).toHaveLength(1);
    expect(audits.map((a) => a.outcome).sort()).toEqual(['budget-exhausted', 'ok']);
    const okAudit = audits.find((a) => a.outcome === 'ok')!;
    const used = await store.usage({ agent: 'digest', hourStartMs: hourStart(clock.now()) });
    // The budget counts all but cache reads (budget.ts, `budgetTokens`).
    expect(used.tokens).toBe(okAudit.input_tokens + okAudit.output_tokens + okAudit.cache_write_tokens);
  });

  it('gives up on a batch that does not end within maxPolls, keeping the reservations charged', async () => {
    const store = new InMemoryBudgetStore();
    const request = digest('growth-9', 'Growth');
    const { llm, audits, clock } = await harness(
      { batches: { pollPolicy, maxPolls: 2 }, budgetStore: store },
      { responder: digestResponder, batchPollsToComplete: 99 },
    );
    const [result] = await llm.summarizeDigests([request]);
    expect(result).toMatchObject({ model: 'rules-only' });
    expect(result!.reason).toMatch(/^timeout: message batch msgbatch_\w+ had not ended after 2 polls/);
    expect(audits.map((a) => a.outcome)).toEqual(['timeout']);
    const worstCase = inputTokenUpperBound(digestPrompt(request, DIGEST_RULES_TEXT)) + 500;
    expect((await store.usage({ agent: 'digest', hourStartMs: hourStart(clock.now()) })).tokens).toBe(worstCase);
  });

  it('answers every request rules-only when the circuit is open, without creating a batch', async () => {
    const { fake, llm, audits } = await harness({ batches: { pollPolicy } }, { responder: digestResponder });
    fake.script([{ kind: 'spend-limit' }]);
    await llm.analyzeFinding(finding());
    const results = await llm.summarizeDigests([digest('growth-9', 'Growth'), digest('income-9', 'Income')]);
    expect(results.map((r) => r.reason)).toEqual([
      'circuit open: recent Anthropic API calls failed',
      'circuit open: recent Anthropic API calls failed',
    ]);
    expect(fake.calls.filter((c) => c.path.startsWith('/v1/messages/batches'))).toHaveLength(0);
    expect(audits.map((a) => a.outcome)).toEqual(['spend-limit', 'circuit-open', 'circuit-open']);
  });

  it('returns nothing for no requests', async () => {
    const { fake, llm } = await harness();
    expect(await llm.summarizeDigests([])).toEqual([]);
    expect(fake.calls).toHaveLength(0);
  });
});
