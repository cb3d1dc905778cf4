/**
 * LLM calls as spans, after the OpenTelemetry GenAI semantic conventions: one client span `chat {model}` per HTTP
 * request to the Messages API, child of the record the call serves, whose context also rides on the request
 * (traceparent), so a tracing proxy or the provider can join it.
 */
import type { Message } from '@anthropic-ai/sdk/resources/messages';
import { SpanKind, SpanStatusCode, trace, tracer, type Context, type Span } from '../observability/tracing.ts';
import type { TokenUsage } from './models.ts';

export const GEN_AI_PROVIDER = 'anthropic';

/** Starts the span of one Messages request; `parent` is the record's context (or the active one). */
export function startChatSpan(
  model: string,
  maxTokens: number,
  parent: Context,
  baseUrl: string,
): { span: Span; context: Context } {
  let server: { address: string; port: number } | undefined;
  try {
    const url = new URL(baseUrl);
    server = { address: url.hostname, port: url.port ? Number(url.port) : url.protocol === 'http:' ? 80 : 443 };
  } catch {
    server = undefined;
  }
  const span = tracer().startSpan(
    `chat ${model}`,
    {
      kind: SpanKind.CLIENT,
      attributes: {
        'gen_ai.operation.name': 'chat',
        'gen_ai.provider.name': GEN_AI_PROVIDER,
        // The attribute's earlier name, still read by many backends.
        'gen_ai.system': GEN_AI_PROVIDER,
        'gen_ai.request.model': model,
        'gen_ai.request.max_tokens': maxTokens,
        ...(server ? { 'server.address': server.address, 'server.port': server.port } : {}),
      },
    },
    parent,
  );
  return { span, context: trace.setSpan(parent, span) };
}

/**
 * Ends the span with the reply's model, id, finish reason and token usage. `gen_ai.usage.input_tokens` counts every
 * input token, cached or not, as the conventions ask (Anthropic's own `input_tokens` leaves the cached ones out);
 * the cache reads and writes are also given apart.
 */
export function endChatSpan(span: Span, message: Message, usage: TokenUsage): void {
  span.setAttributes({
    'gen_ai.response.model': message.model,
    'gen_ai.response.id': message.id,
    ...(message.stop_reason ? { 'gen_ai.response.finish_reasons': [message.stop_reason] } : {}),
    'gen_ai.usage.input_tokens': usage.input + usage.cacheRead + usage.cacheWrite,
    'gen_ai.usage.output_tokens': usage.output,
    'gen_ai.usage.cache_read.input_tokens': usage.cacheRead,
    'gen_ai.usage.cache_creation.input_tokens': usage.cacheWrite,
  });
  span.end();
}

/** Ends the span of a request that failed; `errorType` is the audit outcome (rate-limited, timeout, …). */
export function failChatSpan(span: Span, errorType: string, message: string): void {
  span.setAttribute('error.type', errorType);
  span.setStatus({ code: SpanStatusCode.ERROR, message });
  span.end();
}
