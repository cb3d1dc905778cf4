import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tracing } from '@opentelemetry/sdk-node';
import { ROOT_CONTEXT, SpanKind, trace } from '@opentelemetry/api';
import { startTracing, tracer, type TracingHandle } from '../../../runtime/observability/tracing.ts';
import { retry } from '../../../runtime/retry.ts';
import { finding, harness, messagesCalls, usageOf } from './support.ts';

/** Waits for the spans already ended to reach the exporter (the processor exports once the resource is settled). */
async function flush(): Promise<void> {
  const provider = trace.getTracerProvider() as unknown as { getDelegate(): { forceFlush(): Promise<void> } };
  await provider.getDelegate().forceFlush();
}

describe('LLM calls as GenAI spans', () => {
  const exporter = new tracing.InMemorySpanExporter();
  let handle: TracingHandle | undefined;
  beforeAll(async () => {
    handle = await startTracing('llm-test', () => {}, {}, [new tracing.SimpleSpanProcessor(exporter)]);
  });
  afterAll(() => handle?.shutdown());

  it('an analysis is a chat span, child of its record, whose context the request carries; the audit row has the trace and the finding', async () => {
    exporter.reset();
    const { fake, llm, audits } = await harness();
    const record = tracer().startSpan('process in');
    const parent = trace.setSpan(ROOT_CONTEXT, record);
    await llm.analyzeFinding(finding(), { trace: parent });
    record.end();
    await flush();

    const chat = exporter.getFinishedSpans().find((s) => s.name.startsWith('chat '))!;
    expect(chat.name).toBe('chat claude-haiku-5-5');
    expect(chat.kind).toBe(SpanKind.CLIENT);
    expect(chat.parentSpanContext?.spanId).toBe(record.spanContext().spanId);
    const usage = usageOf(messagesCalls(fake)[0]!);
    expect(chat.attributes).toMatchObject({
      'gen_ai.operation.name': 'chat',
      'gen_ai.provider.name': 'anthropic',
      'gen_ai.system': 'anthropic',
      'gen_ai.request.model': 'claude-haiku-5-5',
      'gen_ai.response.model': 'claude-haiku-5-5',
      'gen_ai.usage.input_tokens':
        usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens,
      'gen_ai.usage.output_tokens': usage.output_tokens,
      'gen_ai.usage.cache_read.input_tokens': usage.cache_read_input_tokens,
      'gen_ai.usage.cache_creation.input_tokens': usage.cache_creation_input_tokens,
    });
    expect(messagesCalls(fake)[0]!.headers.traceparent).toBe(
      `00-${chat.spanContext().traceId}-${chat.spanContext().spanId}-01`,
    );
    expect(audits).toHaveLength(1);
    expect(audits[0]).toMatchObject({ trace_id: record.spanContext().traceId, finding_id: 'f-1', outcome: 'ok' });
  });

  it('a failed request ends its span with error.type', async () => {
    exporter.reset();
    const { fake, llm } = await harness({
      retry: retry({ initialMs: 1, maxMs: 1, factor: 1, jitter: 0, maxAttempts: 1 }),
    });
    fake.script([{ kind: 'server-error' }]);
    const answer = await llm.analyzeFinding(finding());
    expect(answer.model).toBe('rules-only');
    await flush();
    const chat = exporter.getFinishedSpans().find((s) => s.name.startsWith('chat '))!;
    expect(chat.status.code).toBe(2);
    expect(chat.attributes['error.type']).toBe('error');
  });

  it('each digest of a message batch is a chat span in its own record trace, ended with its usage', async () => {
    exporter.reset();
    const { llm, audits } = await harness(
      { batches: { pollPolicy: retry({ initialMs: 1, maxMs: 1, factor: 1, jitter: 0 }) } },
      { batchPollsToComplete: 1 },
    );
    const records = [tracer().startSpan('process a'), tracer().startSpan('process b')];
    const hour = Date.UTC(2026, 0, 5, 9);
    const request = (id: string) => ({
      id,
      portfolioName: id,
      hourStart: hour,
      findingCount: 1,
      bySeverity: { high: 1 },
      topFindings: ['ACME fell 6%'],
    });
    await llm.summarizeDigests([request('growth'), request('income')], {
      traces: records.map((r) => trace.setSpan(ROOT_CONTEXT, r)),
    });
    for (const r of records) r.end();
    await flush();

    const chats = exporter.getFinishedSpans().filter((s) => s.name.startsWith('chat '));
    expect(chats.map((c) => c.parentSpanContext?.spanId).sort()).toEqual(
      records.map((r) => r.spanContext().spanId).sort(),
    );
    for (const chat of chats) expect(typeof chat.attributes['gen_ai.usage.output_tokens']).toBe('number');
    expect(audits.map((a) => a.trace_id).sort()).toEqual(records.map((r) => r.spanContext().traceId).sort());
  });
});
