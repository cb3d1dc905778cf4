/**
 * OpenTelemetry tracing: the one home of trace context across Kafka records, the spans' conventions, and the SDK's
 * life cycle. See docs/tracing.md for the span model and why each output record is parented where it is.
 *
 * Free when off (STYLE habit 9): unless an OTLP endpoint (or an explicit OTEL_TRACES_EXPORTER) is configured, the SDK
 * is not even loaded, `tracingActive()` is false, and every caller skips its tracing work behind that one check; what
 * runs anyway goes through the API's no-op tracer.
 */
import {
  context,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Link,
  type Span,
  type SpanContext,
  type TextMapGetter,
  type Tracer,
} from '@opentelemetry/api';
import type { tracing as sdkTracing } from '@opentelemetry/sdk-node';

export { context, SpanKind, SpanStatusCode, trace, type Context, type Span };

/** Kafka record headers as kafkajs gives and takes them. */
export type RecordHeaders = Record<string, Buffer | string | Array<Buffer | string> | undefined>;

/** The W3C trace-context headers this module writes; every other header of a record is left as it was. */
export const TRACE_HEADERS = ['traceparent', 'tracestate'] as const;

/** Why tracing is on or off, from the standard OTEL_* environment (nothing of our own to configure). */
export function tracingSettings(env: NodeJS.ProcessEnv = process.env): { enabled: boolean; reason: string } {
  if (/^true$/i.test(env.OTEL_SDK_DISABLED ?? '')) return { enabled: false, reason: 'OTEL_SDK_DISABLED=true' };
  const exporters = (env.OTEL_TRACES_EXPORTER ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (exporters.includes('none')) return { enabled: false, reason: 'OTEL_TRACES_EXPORTER=none' };
  if (env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
    return { enabled: true, reason: `OTLP traces to ${env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT}` };
  if (env.OTEL_EXPORTER_OTLP_ENDPOINT)
    return { enabled: true, reason: `OTLP traces to ${env.OTEL_EXPORTER_OTLP_ENDPOINT}` };
  if (exporters.length > 0) return { enabled: true, reason: `OTEL_TRACES_EXPORTER=${exporters.join(',')}` };
  return { enabled: false, reason: 'no OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_TRACES_EXPORTER is set' };
}

let active = false;

/** True once `startTracing` started the SDK in this process: the guard every per-record tracing step sits behind. */
export function tracingActive(): boolean {
  return active;
}

export interface TracingHandle {
  /** Ends the SDK: exports the spans still buffered. Idempotent. */
  shutdown(): Promise<void>;
}

/**
 * Starts the SDK when the environment asks for it (see `tracingSettings`); otherwise returns undefined and loads
 * nothing. Only traces: metrics are prom-client's (/metrics) and logs are the logger's, so the SDK's own metric and
 * log exporters stay off unless OTEL_METRICS_EXPORTER / OTEL_LOGS_EXPORTER say otherwise.
 */
export async function startTracing(
  serviceName: string,
  log: (line: string) => void = () => {},
  env: NodeJS.ProcessEnv = process.env,
  /** Span processors of the embedding application's own (e.g. in-memory in tests): they start tracing whatever the environment says. */
  spanProcessors?: sdkTracing.SpanProcessor[],
): Promise<TracingHandle | undefined> {
  const settings = spanProcessors ? { enabled: true, reason: 'span processors given' } : tracingSettings(env);
  if (!settings.enabled) return undefined;
  env.OTEL_METRICS_EXPORTER ??= 'none';
  env.OTEL_LOGS_EXPORTER ??= 'none';
  const [{ NodeSDK }, { OTLPTraceExporter }] = await Promise.all([
    import('@opentelemetry/sdk-node'),
    import('@opentelemetry/exporter-trace-otlp-proto'),
  ]);
  const explicit = (env.OTEL_TRACES_EXPORTER ?? '').trim() !== '';
  const sdk = new NodeSDK({
    serviceName: env.OTEL_SERVICE_NAME || serviceName,
    // An explicit OTEL_TRACES_EXPORTER (console, otlp, several) is the SDK's to read; otherwise OTLP over HTTP/protobuf.
    ...(spanProcessors ? { spanProcessors } : explicit ? {} : { traceExporter: new OTLPTraceExporter() }),
    instrumentations: [],
  });
  sdk.start();
  active = true;
  log(`tracing on: ${settings.reason}, service ${env.OTEL_SERVICE_NAME || serviceName}`);
  let stopped: Promise<void> | undefined;
  return {
    shutdown() {
      stopped ??= sdk.shutdown().then(
        () => {
          active = false;
        },
        (error: unknown) => {
          active = false;
          log(`tracing: flushing spans at shutdown failed: ${error instanceof Error ? error.message : String(error)}`);
        },
      );
      return stopped;
    },
  };
}

const TRACER_NAME = 'agent-streams';

/**
 * An HTTP request served, as a server span (`{method} {route}`) whose parent is the caller's traceparent, if any.
 * Returns undefined while tracing is off. `end` records the status the response went out with.
 */
export function traceHttpServer(
  request: {
    method?: string | undefined;
    url?: string | undefined;
    headers: Record<string, string | string[] | undefined>;
  },
  route: string,
): { context: Context; end(status: number): void } | undefined {
  if (!active) return undefined;
  const parent = propagation.extract(ROOT_CONTEXT, request.headers);
  const method = request.method ?? 'GET';
  const span = tracer().startSpan(
    `${method} ${route}`,
    {
      kind: SpanKind.SERVER,
      attributes: {
        'http.request.method': method,
        'http.route': route,
        'url.path': new URL(request.url ?? '/', 'http://server').pathname,
      },
    },
    parent,
  );
  return {
    context: trace.setSpan(parent, span),
    end(status) {
      span.setAttribute('http.response.status_code', status);
      if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
    },
  };
}

export function tracer(): Tracer {
  return trace.getTracer(TRACER_NAME);
}

const headerGetter: TextMapGetter<RecordHeaders | undefined> = {
  keys: (carrier) => (carrier ? Object.keys(carrier) : []),
  get: (carrier, key) => {
    const value = carrier?.[key];
    if (value === undefined) return undefined;
    return Array.isArray(value) ? value.map(String) : value.toString();
  },
};

/** The producer's context a record carries (W3C traceparent/tracestate); ROOT_CONTEXT when it carries none. */
export function extractRecordContext(headers: RecordHeaders | undefined): Context {
  if (!headers || headers.traceparent === undefined) return ROOT_CONTEXT;
  return propagation.extract(ROOT_CONTEXT, headers, headerGetter);
}

/** The record's headers with `ctx`'s traceparent (and tracestate) in place of any it had; nothing else changes. */
export function withTraceHeaders<H extends RecordHeaders>(headers: H | undefined, ctx: Context): H {
  return withTraceCarrier(headers, traceHeadersOf(ctx));
}

/** `headers` with the trace headers of `carrier` (as `traceHeadersOf` made them) in place of any it had. */
function withTraceCarrier<H extends RecordHeaders>(headers: H | undefined, carrier: Record<string, string>): H {
  if (carrier.traceparent === undefined) return headers ?? ({} as H);
  const out: RecordHeaders = { ...headers };
  delete out.tracestate;
  Object.assign(out, carrier);
  return out as H;
}

/**
 * A producer's send as a span (kind producer, `send {topic}`), child of the active context: `messages` come back
 * carrying its context; `settle` ends it with the send's outcome. Untouched (and no span) while tracing is off.
 */
export function traceSend<M extends { headers?: RecordHeaders }>(
  topic: string,
  messages: M[],
  fields: { clientId?: string } = {},
): { messages: M[]; settle: (error?: unknown) => void } {
  if (!active) return { messages, settle: () => {} };
  const span = tracer().startSpan(`send ${topic}`, {
    kind: SpanKind.PRODUCER,
    attributes: messagingAttributes('send', { topic, count: messages.length, ...fields }),
  });
  const ctx = trace.setSpan(context.active(), span);
  return {
    messages: messages.map((m) => ({ ...m, headers: withTraceHeaders(m.headers, ctx) })),
    settle: (error?: unknown) => (error === undefined ? span.end() : endWithError(span, error)),
  };
}

/** The HTTP headers that carry `ctx` (for an outgoing request). */
export function traceHeadersOf(ctx: Context): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagation.inject(ctx, carrier);
  return carrier;
}

/** Trace id of the span in `ctx`, or '' when there is none (tracing off, or an invalid context). */
export function traceIdOf(ctx: Context | undefined): string {
  const spanContext = ctx ? trace.getSpanContext(ctx) : undefined;
  return spanContext && trace.isSpanContextValid(spanContext) ? spanContext.traceId : '';
}

/** Links are capped: a 10,000-record batch keeps the first ones (the SDK's default limit is 128 anyway). */
export const MAX_BATCH_LINKS = 128;

/** Messaging attributes (OTel messaging semantic conventions) shared by Kafka spans. */
export function messagingAttributes(
  operation: 'create' | 'send' | 'receive' | 'process' | 'settle',
  fields: {
    topic: string;
    partition?: number;
    offset?: string;
    group?: string;
    count?: number;
    clientId?: string;
    operationName?: string;
  },
): Attributes {
  const attributes: Attributes = {
    'messaging.system': 'kafka',
    'messaging.operation.type': operation,
    'messaging.operation.name': fields.operationName ?? operation,
    'messaging.destination.name': fields.topic,
  };
  if (fields.partition !== undefined) attributes['messaging.destination.partition.id'] = String(fields.partition);
  if (fields.offset !== undefined) attributes['messaging.kafka.offset'] = Number(fields.offset);
  if (fields.group !== undefined) attributes['messaging.consumer.group.name'] = fields.group;
  if (fields.count !== undefined) attributes['messaging.batch.message_count'] = fields.count;
  if (fields.clientId !== undefined) attributes['messaging.client.id'] = fields.clientId;
  return attributes;
}

export function endWithError(span: Span, error: unknown): void {
  span.recordException(error instanceof Error ? error : String(error));
  span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
  span.setAttribute(
    'error.type',
    (error as { code?: string })?.code ?? (error instanceof Error ? error.name : 'Error'),
  );
  span.end();
}

interface ConsumedRecord {
  offset: string;
  headers?: RecordHeaders;
}

/**
 * A consumed batch as spans: one `process {topic}` batch span (kind consumer) linked to each record's producer
 * context, and per record whose producer context was sampled, a `process {topic}` span that is its child. A
 * record's context (`contextOf`) is that span's, or the producer's own when it was not sampled (so the decision
 * travels on), or the batch span's when the record carried none: outputs caused by the record carry it.
 */
export class BatchTrace {
  readonly span: Span;
  readonly context: Context;
  /** By record offset. */
  private readonly records = new Map<string, { context: Context; span?: Span; carrier?: Record<string, string> }>();
  private batchCarrier: Record<string, string> | undefined;

  constructor(
    records: readonly ConsumedRecord[],
    fields: { topic: string; partition: number; group: string; clientId?: string },
    private readonly perRecord = true,
  ) {
    const t = tracer();
    const links: Link[] = [];
    const extracted: Array<[ConsumedRecord, Context, SpanContext | undefined]> = [];
    for (const record of records) {
      const ctx = extractRecordContext(record.headers);
      const spanContext = trace.getSpanContext(ctx);
      extracted.push([record, ctx, spanContext]);
      if (spanContext && links.length < MAX_BATCH_LINKS) links.push({ context: spanContext });
    }
    const name = `process ${fields.topic}`;
    this.span = t.startSpan(
      name,
      {
        kind: SpanKind.CONSUMER,
        links,
        attributes: messagingAttributes('process', { ...fields, count: records.length }),
      },
      ROOT_CONTEXT,
    );
    this.context = trace.setSpan(ROOT_CONTEXT, this.span);
    const batchLink: Link[] = [{ context: this.span.spanContext() }];
    for (const [record, ctx, spanContext] of extracted) {
      if (!spanContext) {
        this.records.set(record.offset, { context: this.context });
      } else if (this.perRecord && (spanContext.traceFlags & 1) === 1) {
        const span = t.startSpan(
          name,
          {
            kind: SpanKind.CONSUMER,
            links: batchLink,
            attributes: messagingAttributes('process', { ...fields, offset: record.offset }),
          },
          ctx,
        );
        this.records.set(record.offset, { context: trace.setSpan(ctx, span), span });
      } else {
        this.records.set(record.offset, { context: ctx });
      }
    }
  }

  /** The context outputs caused by the record at `offset` carry (see the class comment); the batch's for anything else. */
  contextOf(offset: string | undefined): Context {
    return (offset === undefined ? undefined : this.records.get(offset)?.context) ?? this.context;
  }

  /**
   * `headers` carrying the context of the record at `offset` (see `contextOf`), other headers kept. The trace headers
   * are serialised once per record however many outputs it has.
   */
  stamp<H extends RecordHeaders>(headers: H | undefined, offset: string | undefined): H {
    const entry = offset === undefined ? undefined : this.records.get(offset);
    if (!entry) return withTraceCarrier(headers, (this.batchCarrier ??= traceHeadersOf(this.context)));
    return withTraceCarrier(headers, (entry.carrier ??= traceHeadersOf(entry.context)));
  }

  /** `work` with the batch span active (so log lines and child spans see it). */
  bind<T>(work: () => Promise<T>): () => Promise<T> {
    return context.bind(this.context, work);
  }

  /** Settles with `job`: ends the spans, failed if it failed. */
  async around<T>(job: Promise<T>): Promise<T> {
    try {
      const result = await job;
      this.end();
      return result;
    } catch (error) {
      this.end(error);
      throw error;
    }
  }

  /** Ends the record spans and the batch span; with `error`, marks them failed. Idempotent enough: call once. */
  end(error?: unknown): void {
    for (const { span } of this.records.values()) {
      if (!span) continue;
      if (error === undefined) span.end();
      else endWithError(span, error);
    }
    if (error === undefined) this.span.end();
    else endWithError(this.span, error);
  }
}
