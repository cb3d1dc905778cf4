/**
 * What tracing costs the engine per record, with no broker: the work runner.ts does for one batch when tracing is on
 * (a BatchTrace over the consumed records, and a traceparent put on each output), through a real SDK whose batch span
 * processor hands the spans to an exporter that drops them (so the export's network cost is not counted). When tracing
 * is off the runner does none of this (`tracingActive()` is false), so "off" costs nothing to measure.
 *
 *   npx tsx bench/tracing-overhead.ts [--batch 2000] [--batches 200]
 *
 * Three cases: records whose producer context was sampled (a span per record), records whose producer context was not
 * sampled (the context is passed on), and records with no traceparent (the batch span's context).
 */
import { parseArgs } from 'node:util';
import { NodeSDK, tracing } from '@opentelemetry/sdk-node';
import type { ExportResult } from '@opentelemetry/core';
import { BatchTrace } from '../runtime/observability/tracing.ts';

const { values: opts } = parseArgs({
  options: { batch: { type: 'string', default: '2000' }, batches: { type: 'string', default: '200' } },
});
const BATCH = Number(opts.batch);
const BATCHES = Number(opts.batches);

const dropping: tracing.SpanExporter = {
  export: (_spans, done: (result: ExportResult) => void) => done({ code: 0 }),
  shutdown: async () => {},
};
const sdk = new NodeSDK({
  // Exported often enough that no span is dropped for a full queue: every span is paid for in full.
  spanProcessors: [
    new tracing.BatchSpanProcessor(dropping, {
      maxQueueSize: 100_000,
      maxExportBatchSize: 10_000,
      scheduledDelayMillis: 50,
    }),
  ],
  metricReaders: [],
  logRecordProcessors: [],
  autoDetectResources: false,
});
sdk.start();

const hex = (n: number, width: number): string => n.toString(16).padStart(width, '0');
function records(
  kind: 'sampled' | 'unsampled' | 'none',
): Array<{ offset: string; headers: Record<string, Buffer | undefined> }> {
  return Array.from({ length: BATCH }, (_, i) => ({
    offset: String(i),
    headers:
      kind === 'none'
        ? { 'as-source': Buffer.from('x') }
        : {
            'as-source': Buffer.from('x'),
            traceparent: Buffer.from(`00-${hex(i + 1, 32)}-${hex(i + 1, 16)}-${kind === 'sampled' ? '01' : '00'}`),
          },
  }));
}

for (const kind of ['sampled', 'unsampled', 'none'] as const) {
  const input = records(kind);
  const outputs = input.map(() => ({
    topic: 'out',
    key: null,
    value: null,
    headers: { 'as-source': 'x' } as Record<string, string>,
  }));
  // Warm-up, then the measured run.
  for (const measured of [false, true]) {
    const started = performance.now();
    for (let b = 0; b < (measured ? BATCHES : 20); b += 1) {
      const batch = new BatchTrace(input, { topic: 'in', partition: 0, group: 'bench' });
      for (let i = 0; i < outputs.length; i += 1)
        outputs[i]!.headers = batch.stamp(outputs[i]!.headers, input[i]!.offset);
      batch.end();
      // Between batches the event loop turns (as between a member's fetches), so the span processor exports.
      await new Promise((resolve) => setImmediate(resolve));
    }
    if (measured) {
      const perRecordUs = ((performance.now() - started) * 1000) / (BATCHES * BATCH);
      console.log(`${kind.padEnd(9)} ${perRecordUs.toFixed(2)} µs per record (batches of ${BATCH}, one output each)`);
    }
  }
}
await sdk.shutdown();
