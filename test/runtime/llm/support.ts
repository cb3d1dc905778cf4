/**
 * Shared set-up for the LLM tests: the Anthropic stand-in, a service pointed at it, and recorders. The service's
 * caller is the market fleet's analyst (processors/analysis/), the real user of `complete` and `completeBatch`.
 */
import { afterEach } from 'vitest';
import { retry, type Sleep } from '../../../runtime/retry.ts';
import { createLlm, type CreateLlmOptions, type Llm, type LlmCallRecord } from '../../../runtime/llm/index.ts';
import { createAnalyst, type Analyst, type AnalystOptions } from '../../../processors/analysis/analyst.ts';
import type { PromptFinding } from '../../../processors/analysis/prompts.ts';
import {
  startAnthropicFake,
  type AnthropicFake,
  type AnthropicFakeOptions,
  type RecordedCall,
} from '../../fakes/anthropic.ts';

/** A fixed wall clock (whole second, so HTTP dates are exact) that tests move by hand. */
export function manualClock(start = Date.UTC(2026, 0, 5, 10, 0, 0)): {
  now: () => number;
  advance: (ms: number) => void;
} {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

/** Records requested delays and returns at once, so no test waits on a clock. */
export function recordingSleep(): { sleep: Sleep; delays: number[] } {
  const delays: number[] = [];
  return {
    delays,
    sleep: async (ms) => {
      delays.push(ms);
    },
  };
}

/** The generic service and the fleet's analyst on it, as one object. */
export type AnalystLlm = Analyst & Llm;

/** The analyst on `service`, with the service's own surface (mode, circuit, close) beside it. */
export function analystOn(service: Llm, options: AnalystOptions = {}): AnalystLlm {
  const analyst = createAnalyst(service, options);
  return {
    ...analyst,
    get mode() {
      return service.mode;
    },
    get reason() {
      return service.reason;
    },
    get circuitState() {
      return service.circuitState;
    },
    priceOf: (model) => service.priceOf(model),
    complete: (request) => service.complete(request),
    completeBatch: (requests, options) => service.completeBatch(requests, options),
    close: () => service.close(),
  };
}

const analystKeys = ['strongAt', 'digestTier', 'maxTokens', 'digestMaxTokens', 'rulesText'] as const;

/** Splits test options into the service's and the analyst's (`models` as tiers is the analyst's). */
export function splitOptions(
  options: Partial<
    Omit<CreateLlmOptions, 'models'> &
      AnalystOptions & { models: CreateLlmOptions['models'] | AnalystOptions['models'] }
  >,
): {
  service: Partial<CreateLlmOptions>;
  analyst: AnalystOptions;
} {
  const service: Record<string, unknown> = {};
  const analyst: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(options)) {
    const isAnalyst = (analystKeys as readonly string[]).includes(key) || (key === 'models' && !Array.isArray(value));
    (isAnalyst ? analyst : service)[key] = value;
  }
  return { service: service as Partial<CreateLlmOptions>, analyst: analyst as AnalystOptions };
}

const fakes: AnthropicFake[] = [];
const services: AnalystLlm[] = [];
afterEach(async () => {
  for (const llm of services.splice(0)) llm.close();
  await Promise.all(fakes.splice(0).map((f) => f.close()));
});

export interface Harness {
  fake: AnthropicFake;
  llm: AnalystLlm;
  audits: LlmCallRecord[];
  delays: number[];
  logs: string[];
  clock: ReturnType<typeof manualClock>;
}

export async function harness(
  options: Parameters<typeof splitOptions>[0] = {},
  fakeOptions: AnthropicFakeOptions = {},
): Promise<Harness> {
  const split = splitOptions(options);
  const fake = await startAnthropicFake(fakeOptions);
  fakes.push(fake);
  const audits: LlmCallRecord[] = [];
  const logs: string[] = [];
  const { sleep, delays } = recordingSleep();
  const clock = manualClock();
  const service = createLlm({
    apiKey: 'sk-ant-test',
    baseUrl: fake.url,
    budgets: { default: { tokensPerHour: 1_000_000 } },
    retry: retry({ initialMs: 10, maxMs: 1_000, factor: 2, jitter: 0, maxAttempts: 3 }),
    onAudit: (record) => void audits.push(record),
    log: (line) => void logs.push(line),
    now: clock.now,
    sleep,
    ...split.service,
  });
  const llm = analystOn(service, split.analyst);
  services.push(llm);
  return { fake, llm, audits, delays, logs, clock };
}

export function messagesCalls(fake: AnthropicFake): RecordedCall[] {
  return fake.calls.filter((c) => c.method === 'POST' && c.path === '/v1/messages');
}

export interface FakeUsage {
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens: number;
  cache_read_input_tokens: number;
}

export function usageOf(call: RecordedCall): FakeUsage {
  return (call.response as { usage: FakeUsage }).usage;
}

export function finding(overrides: Partial<PromptFinding> = {}): PromptFinding {
  return {
    id: 'f-1',
    agent: 'price-move',
    rule: 'move-5pct',
    symbol: 'ACME',
    severity: 'high',
    evidence: { change: 0.0712, from: 101.5, to: 108.73 },
    summary: 'ACME rose 7.1% in 5 minutes',
    ...overrides,
  };
}

/** A reply in the analysis format. */
export function analysisReply(
  fields: Partial<{ summary: string; recommended_action: string; severity: string; confidence: number }> = {},
): string {
  return JSON.stringify({
    summary: 'A sharp move on no news.',
    recommended_action: 'Check stops.',
    severity: 'high',
    confidence: 0.8,
    ...fields,
  });
}
