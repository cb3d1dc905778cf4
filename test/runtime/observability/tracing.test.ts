import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeSDK, tracing } from '@opentelemetry/sdk-node';
import { context, SpanKind, trace } from '@opentelemetry/api';
import {
  BatchTrace,
  extractRecordContext,
  startTracing,
  tracer,
  tracingActive,
  tracingSettings,
  traceIdOf,
  withTraceHeaders,
} from '../../../runtime/observability/tracing.ts';

describe('tracing settings', () => {
  it('is off unless an OTLP endpoint or an exporter is configured, and OTEL_SDK_DISABLED or none wins', () => {
    expect(tracingSettings({}).enabled).toBe(false);
    expect(tracingSettings({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' }).enabled).toBe(true);
    expect(tracingSettings({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://127.0.0.1:4318/v1/traces' }).enabled).toBe(
      true,
    );
    expect(tracingSettings({ OTEL_TRACES_EXPORTER: 'console' }).enabled).toBe(true);
    expect(
      tracingSettings({ OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' }).enabled,
    ).toBe(false);
    expect(
      tracingSettings({ OTEL_SDK_DISABLED: 'true', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' }).enabled,
    ).toBe(false);
  });

  it('starts nothing when off: no SDK, headers untouched', async () => {
    expect(await startTracing('test', () => {}, {})).toBeUndefined();
    expect(tracingActive()).toBe(false);
    const headers = { 'as-source': 'x' };
    expect(withTraceHeaders(headers, context.active())).toBe(headers);
  });
});

describe('trace context on records', () => {
  const exporter = new tracing.InMemorySpanExporter();
  const sdk = new NodeSDK({
    spanProcessors: [new tracing.SimpleSpanProcessor(exporter)],
    metricReaders: [],
    logRecordProcessors: [],
    autoDetectResources: false,
  });
  beforeAll(() => sdk.start());
  afterAll(() => sdk.shutdown());

  const traceparent = (traceId: string, spanId: string, sampled: boolean): string =>
    `00-${traceId}-${spanId}-${sampled ? '01' : '00'}`;

  it('replaces traceparent and tracestate, keeps every other header', () => {
    const span = tracer().startSpan('producer');
    const ctx = trace.setSpan(context.active(), span);
    const headers = withTraceHeaders(
      {
        'as-dead-letter-topic': 'in',
        traceparent: traceparent('1'.repeat(32), '2'.repeat(16), true),
        tracestate: 'old=1',
      },
      ctx,
    );
    expect(headers['as-dead-letter-topic']).toBe('in');
    expect(headers.traceparent).toBe(traceparent(span.spanContext().traceId, span.spanContext().spanId, true));
    expect(headers.tracestate).toBeUndefined();
    expect(traceIdOf(extractRecordContext(headers))).toBe(span.spanContext().traceId);
    span.end();
  });

  it('a batch span links to the producers; sampled records get a child span, unsampled ones keep their producer context', () => {
    exporter.reset();
    const sampled = {
      offset: '10',
      headers: { traceparent: Buffer.from(traceparent('a'.repeat(32), 'b'.repeat(16), true)) },
    };
    const unsampled = { offset: '11', headers: { traceparent: traceparent('c'.repeat(32), 'd'.repeat(16), false) } };
    const bare = { offset: '12', headers: {} };
    const batch = new BatchTrace([sampled, unsampled, bare], { topic: 'in', partition: 3, group: 'app.proc' });

    const sampledCtx = trace.getSpanContext(batch.contextOf('10'))!;
    expect(sampledCtx.traceId).toBe('a'.repeat(32));
    expect(sampledCtx.spanId).not.toBe('b'.repeat(16));
    expect(trace.getSpanContext(batch.contextOf('11'))).toMatchObject({
      traceId: 'c'.repeat(32),
      spanId: 'd'.repeat(16),
      traceFlags: 0,
    });
    expect(batch.contextOf('12')).toBe(batch.context);
    expect(batch.contextOf(undefined)).toBe(batch.context);
    batch.end();

    const spans = exporter.getFinishedSpans();
    expect(spans).toHaveLength(2);
    const batchSpan = spans.find((s) => s.attributes['messaging.batch.message_count'] === 3)!;
    expect(batchSpan.name).toBe('process in');
    expect(batchSpan.kind).toBe(SpanKind.CONSUMER);
    expect(batchSpan.parentSpanContext).toBeUndefined();
    expect(batchSpan.links.map((l) => l.context.spanId)).toEqual(['b'.repeat(16), 'd'.repeat(16)]);
    const recordSpan = spans.find((s) => s.attributes['messaging.kafka.offset'] === 10)!;
    expect(recordSpan.parentSpanContext?.spanId).toBe('b'.repeat(16));
    expect(recordSpan.attributes).toMatchObject({
      'messaging.system': 'kafka',
      'messaging.operation.type': 'process',
      'messaging.destination.name': 'in',
      'messaging.destination.partition.id': '3',
      'messaging.consumer.group.name': 'app.proc',
    });
    expect(recordSpan.links.map((l) => l.context.spanId)).toEqual([batchSpan.spanContext().spanId]);
  });

  it('ends the spans as failed when the batch fails', async () => {
    exporter.reset();
    const batch = new BatchTrace(
      [{ offset: '1', headers: { traceparent: traceparent('e'.repeat(32), 'f'.repeat(16), true) } }],
      { topic: 'in', partition: 0, group: 'g' },
    );
    await expect(batch.around(Promise.reject(new Error('commit failed')))).rejects.toThrow('commit failed');
    expect(exporter.getFinishedSpans().map((s) => s.status.code)).toEqual([2, 2]);
  });
});
