/**
 * One trace across the fleet, through a real OpenTelemetry Collector (built from the Go module proxy, OTLP in, file
 * out): price ticks posted to the HTTP ingest gateway travel ingest → router → price-move → portfolio-exposure →
 * alert-analyst (its LLM call to the Anthropic stand-in a GenAI span) → ClickHouse sink, six processes, and the
 * collector's file must show one trace id on every hop. The llm_calls row of that call carries the trace id and the
 * finding it served, which is the finding of the alert in ClickHouse.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMember, stopMembers, waitUntilStarted, type Member } from '../../cli/fleet.ts';
import { projectRoot } from '../../cli/paths.ts';
import { ensureOtelCollector, startOtelCollector, type RunningCollector } from '../../infra/local/otel-collector.ts';
import { openClickHouse } from '../../sinks/clickhouse/client.ts';
import { fleetResponder, startAnthropicFake, type AnthropicFake } from '../fakes/anthropic.ts';
import { prepareFleet } from './fleet-run.ts';

const TOPOLOGY_FILE = join(projectRoot, 'topologies/market-signals.ts');
const API_KEY = 'trace-test-key-0123456789';

interface OtlpValue {
  stringValue?: string;
  intValue?: string | number;
  doubleValue?: number;
  arrayValue?: { values: OtlpValue[] };
}
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: Array<{ key: string; value: OtlpValue }>;
  links?: Array<{ traceId: string; spanId: string }>;
}
interface Span extends OtlpSpan {
  service: string;
  attrs: Record<string, string | number | undefined>;
}

/** Every span in the collector's file (OTLP JSON, one export request per line), with its service name. */
function readSpans(file: string): Span[] {
  const spans: Span[] = [];
  const value = (v: OtlpValue): string | number | undefined =>
    v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : v.doubleValue);
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (line.trim() === '') continue;
    const request = JSON.parse(line) as {
      resourceSpans: Array<{
        resource: { attributes: Array<{ key: string; value: OtlpValue }> };
        scopeSpans: Array<{ spans?: OtlpSpan[] }>;
      }>;
    };
    for (const rs of request.resourceSpans) {
      const service = String(value(rs.resource.attributes.find((a) => a.key === 'service.name')!.value));
      for (const ss of rs.scopeSpans) {
        for (const span of ss.spans ?? [])
          spans.push({
            ...span,
            service,
            attrs: Object.fromEntries((span.attributes ?? []).map((a) => [a.key, value(a.value)])),
          });
      }
    }
  }
  return spans;
}

describe('tracing across the fleet', () => {
  let dir: string;
  let collector: RunningCollector | undefined;
  let anthropic: AnthropicFake | undefined;
  const members: Member[] = [];

  beforeAll(() => {
    // Built once per clone into .cache/go (minutes the first time); not counted in the test's own time.
    ensureOtelCollector((line) => console.log(`trace test: ${line}`));
  }, 20 * 60_000);

  afterAll(async () => {
    await stopMembers(members, 10_000);
    await collector?.stop();
    await anthropic?.close();
    if (dir && !process.env.AS_TRACE_TEST_KEEP) rmSync(dir, { recursive: true, force: true });
  });

  it('one trace spans ingest → router → agent → exposure → analyst (GenAI span) → sink, and llm_calls has its trace id and finding', async () => {
    dir = mkdtempSync(join(tmpdir(), 'as-trace-'));
    const file = join(dir, 'spans.jsonl');
    collector = await startOtelCollector({ dir, file });
    anthropic = await startAnthropicFake({ responder: fleetResponder });

    const { database, application, eventsTopic, topology, chConfig } = await prepareFleet('trace');

    const env = (service: string): Record<string, string> => ({
      AS_FLEET_APP: application,
      AS_FLEET_EVENTS_TOPIC: eventsTopic,
      AS_CLICKHOUSE_DATABASE: database,
      ANTHROPIC_API_KEY: 'sk-ant-local-stand-in',
      ANTHROPIC_BASE_URL: anthropic!.url,
      AS_INGEST_API_KEYS: API_KEY,
      OTEL_EXPORTER_OTLP_ENDPOINT: collector!.endpoint,
      OTEL_SERVICE_NAME: service,
      OTEL_BSP_SCHEDULE_DELAY: '200',
    });
    const processors = ['router', 'price-move', 'portfolio-exposure', 'alert-analyst'];
    for (const name of processors) members.push(startMember(TOPOLOGY_FILE, name, env(name)));
    members.push(
      startMember(TOPOLOGY_FILE, 'clickhouse-sink', env('clickhouse-sink'), { command: ['sink', TOPOLOGY_FILE] }),
    );
    const ingest = startMember(TOPOLOGY_FILE, 'ingest', env('ingest'), {
      command: ['ingest', '--port', '0', '--topic', eventsTopic, '--partitions', '6'],
    });
    members.push(ingest);
    await waitUntilStarted(members.slice(0, -1), 120_000);
    const deadline = Date.now() + 120_000;
    let url: string | undefined;
    while ((url = ingest.events.find((e) => e.event === 'listening')?.url as string | undefined) === undefined) {
      if (ingest.child.exitCode !== null || Date.now() > deadline) throw new Error('the ingest gateway did not start');
      await sleep(100);
    }
    // Members join their groups after 'started'; give the group coordinator a moment so no batch waits on a rebalance.
    await sleep(3_000);

    // ACME (held by the growth and income portfolios, alerting at high) falls 6.5% within a minute: price-move finds
    // a high move, exposure grades it per portfolio, the analyst asks the LLM and raises alerts.
    const now = Date.now();
    const prices = [100, 99.8, 99.5, 98, 96.5, 95, 93.5];
    const ticks = prices.map((price, i) => ({
      symbol: 'ACME',
      eventTime: now - (prices.length - i) * 8_000,
      price,
      bid: null,
      ask: null,
      currency: 'USD',
    }));
    const response = await fetch(`${url}/v1/events/PriceTick`, {
      method: 'POST',
      body: JSON.stringify(ticks),
      headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` },
    });
    expect(response.status).toBe(202);

    const ch = openClickHouse(chConfig);
    const query = async (sql: string): Promise<Array<Record<string, unknown>>> =>
      (await ch.query({ query: sql, format: 'JSONEachRow' })).json();
    try {
      let alerts: Array<Record<string, unknown>> = [];
      let calls: Array<Record<string, unknown>> = [];
      // Wait for a call whose alert has reached ClickHouse too: the analyst's audit row and the sink's alert row are
      // written by different processes, so the first call seen may not have its alert yet.
      const served = (): Array<Record<string, unknown>> =>
        calls.filter((c) => alerts.some((a) => (a.finding_ids as string[]).includes(String(c.finding_id))));
      while (served().length === 0) {
        if (Date.now() > deadline + 30_000) {
          const exited = members
            .filter((m) => m.child.exitCode !== null)
            .map((m) => `${m.processor} exited ${m.child.exitCode}`);
          throw new Error(
            `no alert/llm call in ClickHouse: ${alerts.length} alerts, ${calls.length} calls; ${exited.join(', ') || 'every member still running'}`,
          );
        }
        await sleep(1_000);
        alerts = await query(`SELECT alert_id, finding_ids, model FROM alerts FINAL`);
        calls = await query(
          `SELECT call_id, trace_id, finding_id, outcome, input_tokens, output_tokens FROM llm_calls FINAL WHERE outcome = 'ok'`,
        );
      }
      // Every member drains on SIGTERM and its SDK flushes its spans on the way out; then the collector flushes the file.
      expect(await stopMembers(members.splice(0), 30_000)).toEqual([0, 0, 0, 0, 0, 0]);
      await collector.stop();

      const spans = readSpans(file);
      const chats = spans.filter((s) => s.name.startsWith('chat '));
      expect(chats.length).toBeGreaterThan(0);
      const servedTraces = new Set(served().map((c) => String(c.trace_id)));
      const found = chats.find((c) => servedTraces.has(c.traceId));
      expect(found, `a chat span in one of the traces ${[...servedTraces].join(', ')}`).toBeDefined();
      const chat = found!;
      expect(chat.service).toBe('alert-analyst');
      expect(chat.kind).toBe(3); // client
      expect(chat.attrs).toMatchObject({
        'gen_ai.operation.name': 'chat',
        'gen_ai.provider.name': 'anthropic',
        'gen_ai.system': 'anthropic',
      });
      expect(chat.name).toBe(`chat ${chat.attrs['gen_ai.request.model']}`);
      expect(chat.attrs['gen_ai.response.model']).toBe(chat.attrs['gen_ai.request.model']);
      for (const key of [
        'gen_ai.usage.input_tokens',
        'gen_ai.usage.output_tokens',
        'gen_ai.usage.cache_read.input_tokens',
        'gen_ai.usage.cache_creation.input_tokens',
      ]) {
        expect(typeof chat.attrs[key], key).toBe('number');
      }
      expect(Number(chat.attrs['gen_ai.usage.output_tokens'])).toBeGreaterThan(0);

      // The request to the Anthropic stand-in carried the chat span's context.
      const traceparents = anthropic.calls.map((c) => c.headers.traceparent);
      expect(traceparents, JSON.stringify({ traceparents, chat: [chat.traceId, chat.spanId] })).toContain(
        `00-${chat.traceId}-${chat.spanId}-01`,
      );

      const trace = spans.filter((s) => s.traceId === chat.traceId);
      const describe = (): string => [...new Set(trace.map((s) => `${s.service}: ${s.name}`))].join('; ');
      const parentOf = (span: Span): Span => {
        const parent = trace.find((s) => s.spanId === span.parentSpanId);
        expect(
          parent,
          `the parent of ${span.service}: ${span.name} in trace ${chat.traceId} (${describe()})`,
        ).toBeDefined();
        return parent!;
      };
      // Walking up from the LLM call, parent by parent: each hop is the child of the record context the previous
      // process produced, back to the HTTP request that brought the ticks in.
      const analyst = parentOf(chat);
      const exposure = parentOf(analyst);
      const agent = parentOf(exposure);
      const routed = parentOf(agent);
      const sent = parentOf(routed);
      const received = parentOf(sent);
      expect([analyst, exposure, agent, routed, sent, received].map((s) => `${s.service}: ${s.name}`)).toEqual([
        `alert-analyst: process ${application}.portfolio-findings`,
        `portfolio-exposure: process ${application}.findings`,
        `price-move: process ${application}.signals.price`,
        `router: process ${eventsTopic}`,
        `ingest: send ${eventsTopic}`,
        'ingest: POST /v1/events/{type}',
      ]);
      expect(received.parentSpanId ?? '').toBe('');
      // The alert that record became reached the sink, in the same trace.
      const sunk = trace.find(
        (s) =>
          s.service === 'clickhouse-sink' &&
          s.name === `process ${application}.alerts` &&
          s.parentSpanId === analyst.spanId,
      );
      expect(sunk, `the sink's span of the alert in trace ${chat.traceId} (${describe()})`).toBeDefined();
      expect(new Set(trace.map((s) => s.service))).toEqual(
        new Set(['ingest', 'router', 'price-move', 'portfolio-exposure', 'alert-analyst', 'clickhouse-sink']),
      );

      // Messaging conventions on the record spans, and the batch spans linked to their records' producers.
      expect(analyst.kind).toBe(5); // consumer
      expect(analyst.attrs).toMatchObject({
        'messaging.system': 'kafka',
        'messaging.operation.type': 'process',
        'messaging.destination.name': `${application}.portfolio-findings`,
        'messaging.consumer.group.name': topology.groupId('alert-analyst'),
      });
      expect(typeof analyst.attrs['messaging.kafka.offset']).toBe('number');
      expect(sent.kind).toBe(4); // producer
      expect(sent.attrs).toMatchObject({
        'messaging.system': 'kafka',
        'messaging.operation.type': 'send',
        'messaging.destination.name': eventsTopic,
      });
      const batch = spans.find(
        (s) =>
          s.service === 'router' &&
          s.name === `process ${eventsTopic}` &&
          (s.links ?? []).some((l) => l.traceId === chat.traceId && l.spanId === sent.spanId),
      );
      expect(batch, 'the router batch span links to the ingest send span').toBeDefined();
      expect(batch!.parentSpanId ?? '').toBe('');
      expect(batch!.attrs['messaging.batch.message_count']).toBe(ticks.length);

      // The audit row of the call: its trace id, and the finding of the alert it served.
      const row = calls.find((c) => c.trace_id === chat.traceId);
      expect(row, `an llm_calls row with trace id ${chat.traceId}`).toBeDefined();
      const findingId = String(row!.finding_id);
      expect(findingId).not.toBe('');
      const alert = alerts.find((a) => (a.finding_ids as string[]).includes(findingId));
      expect(alert).toBeDefined();
      expect(alert!.alert_id).toBe(createHash('sha256').update(findingId).digest('hex'));
      expect(alert!.model).not.toBe('rules-only');
    } finally {
      await ch.close();
    }
  }, 180_000);
});
