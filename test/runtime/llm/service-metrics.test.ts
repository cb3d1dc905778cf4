/**
 * The LLM service's gauges, read when /metrics is scraped: each agent type's hourly budget (limit, used, remaining)
 * and the circuit's state — including changes no call makes (a new hour, a cool-down ending) — and cost by agent
 * and model.
 */
import { describe, expect, it } from 'vitest';
import { createMetrics } from '../../../runtime/observability/metrics.ts';
import { retry } from '../../../runtime/retry.ts';
import { finding, harness } from './support.ts';

function value(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('LLM service metrics', () => {
  it('report budget limit, used and remaining per agent type, cost by agent and model, and the circuit state', async () => {
    const metrics = createMetrics({ processMetrics: false });
    const { fake, llm, clock } = await harness({
      metrics,
      budgets: { default: { tokensPerHour: 1_000_000 }, perAgent: { digest: { tokensPerHour: 50_000 } } },
      circuit: { failureThreshold: 1, cooldownMs: 60_000, spendLimitCooldownMs: 60_000 },
      retry: retry({ initialMs: 1, maxMs: 1, jitter: 0, maxAttempts: 1 }),
    });
    // A configured agent type is there before any call; its whole budget remains.
    let text = await metrics.registry.metrics();
    expect(value(text, 'agent_streams_llm_budget_limit_tokens{agent="digest"}')).toBe(50_000);
    expect(value(text, 'agent_streams_llm_budget_remaining_tokens{agent="digest"}')).toBe(50_000);
    expect(value(text, 'agent_streams_llm_circuit_state{state="closed"}')).toBe(1);

    await llm.analyzeFinding(finding({ agent: 'price-move' }));
    text = await metrics.registry.metrics();
    const used = value(text, 'agent_streams_llm_budget_used_tokens{agent="price-move"}')!;
    expect(used).toBeGreaterThan(0);
    expect(value(text, 'agent_streams_llm_budget_limit_tokens{agent="price-move"}')).toBe(1_000_000);
    expect(value(text, 'agent_streams_llm_budget_remaining_tokens{agent="price-move"}')).toBe(1_000_000 - used);
    expect(
      value(text, 'agent_streams_llm_cost_usd_total{model="claude-haiku-5-5",agent="price-move"}'),
    ).toBeGreaterThan(0);

    // A failure opens the circuit (threshold 1); the gauge says so, and says half-open once the cool-down passed.
    fake.script([{ kind: 'server-error' }]);
    await llm.analyzeFinding(finding({ id: 'f-2', agent: 'price-move' }));
    text = await metrics.registry.metrics();
    expect(value(text, 'agent_streams_llm_circuit_state{state="open"}')).toBe(1);
    expect(value(text, 'agent_streams_llm_circuit_state{state="closed"}')).toBe(0);
    clock.advance(61_000);
    text = await metrics.registry.metrics();
    expect(value(text, 'agent_streams_llm_circuit_state{state="half-open"}')).toBe(1);
    expect(value(text, 'agent_streams_llm_circuit_state{state="open"}')).toBe(0);

    // A new hour: the budget is whole again, with no call in between.
    clock.advance(3_600_000);
    text = await metrics.registry.metrics();
    expect(value(text, 'agent_streams_llm_budget_used_tokens{agent="price-move"}')).toBe(0);
    expect(value(text, 'agent_streams_llm_budget_remaining_tokens{agent="price-move"}')).toBe(1_000_000);

    // After close() the samplers are gone; the scrape still works and the gauges keep their last values.
    llm.close();
    expect(await metrics.registry.metrics()).toContain('agent_streams_llm_circuit_state');
  });
});
