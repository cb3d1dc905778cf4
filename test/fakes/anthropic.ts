/**
 * A local stand-in for the Anthropic Messages and Message Batches endpoints — the one fake this project allows.
 * Tests reach it through the real SDK (`baseURL`), so request building, error classes, headers and JSONL decoding
 * are the SDK's own; only the server side is imitated. It binds 127.0.0.1 and nothing else.
 *
 * Token counts are an approximation (a quarter of the characters, rounded up, per text piece), which is all the
 * tests need: the numbers are consistent between `usage`, the audit and the budget, not equal to Claude's tokenizer.
 * (The runtime reserves budget by UTF-8 bytes, `inputTokenUpperBound`, which is never below this count.)
 *
 * Prompt caching works like the API's: a `cache_control` breakpoint caches the prefix up to and including its block,
 * per model, only when that prefix is at least the model's minimum cacheable length (`minimumCacheableTokens`);
 * a shorter prefix is simply not cached — no error, both cache counters 0, every token billed as input. A request
 * reads the longest cached prefix among its breakpoints (`cache_read_input_tokens`, refreshing its TTL), and writes
 * the prefix up to its last eligible breakpoint when that is longer (`cache_creation_input_tokens`, by TTL in
 * `cache_creation`, split into `ephemeral_5m_input_tokens` / `ephemeral_1h_input_tokens` by each breakpoint's
 * `ttl`); `input_tokens` is what comes after. Entries live 5 minutes from their last use, or an hour when written by
 * a `ttl: '1h'` breakpoint (a read refreshes an entry by the TTL it was written with), on the fake's clock (`now`);
 * a 1-hour breakpoint after a 5-minute one is refused, as the API refuses it.
 *
 * Error bodies follow the API's `{ type: 'error', error: { type, message, details? }, request_id }` envelope. The
 * spend-limit 429 is a `rate_limit_error` whose `details.error_code` is `enforced_spend_limit_reached` (monthly tier
 * threshold) or `contract_spend_limit_reached`, and whose message says the usage limit is reached — the shape SDK
 * 1.12 maps to `EnforcedSpendLimitReachedError` / `ContractSpendLimitReachedError`. It carries no retry-after
 * unless the script asks for one (a client must not retry it either way).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface TextBlock {
  type: 'text';
  text: string;
  cache_control?: { type: 'ephemeral'; ttl?: '5m' | '1h' };
}

export interface FakeMessage {
  role: 'user' | 'assistant';
  content: string | TextBlock[];
}

/** A /v1/messages body (or a batch request's `params`) that passed validation. */
export interface FakeMessagesRequest {
  model: string;
  max_tokens: number;
  system?: string | TextBlock[];
  messages: FakeMessage[];
  [key: string]: unknown;
}

/** Produces the model's reply text from the request. */
export type Responder = (request: FakeMessagesRequest) => string;

export type SpendLimitErrorCode = 'enforced_spend_limit_reached' | 'contract_spend_limit_reached';

/** What the fake does with one call. A scripted queue is consumed in order; an empty queue means `ok`. */
export type Behaviour =
  /** `delayMs` holds the answer back, so that requests overlap (for concurrency tests; nothing asserts timing). */
  | { kind: 'ok'; text?: string | Responder; delayMs?: number }
  /** 429 rate_limit_error; `retryAfter` is the header value: seconds or an HTTP date (default '7'). */
  | { kind: 'rate-limit'; retryAfter?: string }
  /** 429 whose message and error_code say the spend limit is reached. */
  | { kind: 'spend-limit'; errorCode?: SpendLimitErrorCode; retryAfter?: string }
  /** 529 overloaded_error, with a retry-after header only when given. */
  | { kind: 'overloaded'; retryAfter?: string }
  /** Never answers; the socket stays open until the client gives up. In a batch: the request expires. */
  | { kind: 'timeout' }
  /** 200 with text that is not the requested JSON. */
  | { kind: 'malformed'; text?: string }
  /** 500 api_error. */
  | { kind: 'server-error' };

export type BehaviourKind = Behaviour['kind'];

export interface RecordedCall {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: unknown;
  /** The behaviour applied to a messages call. */
  behaviour?: BehaviourKind;
  /** The behaviours applied to a batch's items, in request order (batch create only). */
  batchBehaviours?: BehaviourKind[];
  /** Absent while the call hangs (timeout behaviour). */
  status?: number;
  /** The JSON answered (for batch results: the parsed JSONL lines). */
  response?: unknown;
}

export interface AnthropicFakeOptions {
  /** 0 (default) picks a free port. */
  port?: number;
  /** Reply text of an `ok` call without its own text; default `echoAnalysis`. */
  responder?: Responder;
  /** A batch reports `ended` on this retrieve (1 = the first poll); default 2. */
  batchPollsToComplete?: number;
  /** The clock cache entries expire by (epoch ms); default Date.now. */
  now?: () => number;
  /** The minimum cacheable prefix of a model, in the fake's tokens; default `minimumCacheableTokens`. */
  minCacheableTokens?: (model: string) => number;
}

export interface AnthropicFake {
  /** Base URL for the SDK's `baseURL`. */
  readonly url: string;
  /** Every request received, in arrival order. */
  readonly calls: RecordedCall[];
  /** The most /v1/messages requests that were open at the same time. */
  readonly maxInFlight: number;
  /** Queues behaviours for the next /v1/messages calls. */
  script(behaviours: Behaviour[]): void;
  /** Queues behaviours for the next batch items, consumed in request order when a batch is created. */
  scriptBatch(behaviours: Behaviour[]): void;
  close(): Promise<void>;
}

/** The default reply: a valid analysis that echoes the start of the last user message. */
export const echoAnalysis: Responder = (request) =>
  JSON.stringify({
    summary: `Analysis of: ${lastUserText(request).replace(/\s+/g, ' ').slice(0, 120)}`,
    recommended_action: 'Review the position against the evidence.',
    severity: 'low',
    confidence: 0.7,
  });

/** A digest request (`Portfolio: …` / `Hour: …`) gets a digest summary; anything else `echoAnalysis`. */
export const fleetResponder: Responder = (request) => {
  const text = lastUserText(request);
  const portfolio = /^Portfolio: (.*)$/m.exec(text)?.[1];
  const hour = /^Hour: (.*)$/m.exec(text)?.[1];
  if (portfolio !== undefined && hour !== undefined) {
    const findings = /^Findings: (.*)$/m.exec(text)?.[1] ?? '0';
    return JSON.stringify({ summary: `Digest of ${portfolio}, ${hour}: ${findings} findings.` });
  }
  return echoAnalysis(request);
};

export function lastUserText(request: FakeMessagesRequest): string {
  const last = [...request.messages].reverse().find((m) => m.role === 'user');
  if (last === undefined) return '';
  return typeof last.content === 'string' ? last.content : last.content.map((b) => b.text).join('\n');
}

/** The fake's tokenizer: a quarter of the characters, rounded up. */
export function fakeTokens(text: string): number {
  return Math.ceil(text.length / 4);
}

/**
 * The minimum cacheable prefix per model, as Anthropic documents it (Prompt caching, "Cache limitations", 2026):
 * 4,096 tokens for Haiku 4.5, Opus 4.5 and Opus 4.6; 2,048 for Opus 4.7 and Haiku 3 / 3.5; 1,024 for Sonnet 4.x / 5,
 * Opus 4 / 4.1 / 4.8 and Sonnet 3.7; 512 for Opus 5. Ids this list does not know (the fleet's `claude-haiku-5-5`)
 * take their class's strictest current figure: Haiku 4,096, Sonnet 1,024, Opus 4,096; anything else 1,024.
 */
export function minimumCacheableTokens(model: string): number {
  const id = model.toLowerCase();
  if (/haiku-3|3-5-haiku|3-haiku/.test(id)) return 2_048;
  if (id.includes('haiku')) return 4_096;
  if (id.includes('sonnet')) return 1_024;
  if (/opus-5/.test(id)) return 512;
  if (/opus-4-7/.test(id)) return 2_048;
  if (/opus-4-(?:8|1\b|1-)|opus-4(?:-\d{8})?$|3-opus/.test(id)) return 1_024;
  if (id.includes('opus')) return 4_096;
  return 1_024;
}

/** How long a cache entry lives after its last use. */
const CACHE_TTL_MS = { '5m': 5 * 60_000, '1h': 60 * 60_000 } as const;

const MALFORMED_TEXT =
  'The finding looks significant. I would keep an eye on it, but I cannot say more without further data.';
// Framing tokens the real API adds around each message and the request; they keep counts from being exact text sums.
const REQUEST_OVERHEAD_TOKENS = 3;
const MESSAGE_OVERHEAD_TOKENS = 4;
const MAX_CACHE_BREAKPOINTS = 4;
const CUSTOM_ID = /^[a-zA-Z0-9_-]{1,64}$/;

interface ErrorSpec {
  status: number;
  type: string;
  message: string;
  details?: Record<string, string>;
  headers?: Record<string, string>;
}

interface Usage {
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens: number;
  cache_read_input_tokens: number;
  cache_creation: { ephemeral_5m_input_tokens: number; ephemeral_1h_input_tokens: number };
  service_tier: 'standard' | 'batch';
}

type BatchResult =
  | { type: 'succeeded'; message: Record<string, unknown> }
  | {
      type: 'errored';
      error: {
        type: 'error';
        error: { type: string; message: string; details?: Record<string, string> };
        request_id: string;
      };
    }
  | { type: 'expired' };

interface Batch {
  id: string;
  createdAt: Date;
  polls: number;
  endedAt: Date | null;
  results: Array<{ custom_id: string; result: BatchResult }>;
}

function id(prefix: string): string {
  return `${prefix}${randomBytes(12).toString('base64url').replace(/[-_]/g, 'x')}`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function validTextBlock(value: unknown, where: string): string | undefined {
  if (!isRecord(value)) return `${where}: Input should be a valid dictionary`;
  if (value.type !== 'text') return `${where}.type: only 'text' blocks are supported by this stand-in`;
  if (typeof value.text !== 'string' || value.text.length === 0)
    return `${where}.text: text content blocks must be non-empty`;
  if (value.cache_control !== undefined && value.cache_control !== null) {
    if (!isRecord(value.cache_control) || value.cache_control.type !== 'ephemeral')
      return `${where}.cache_control.type: Input should be 'ephemeral'`;
    const ttl = value.cache_control.ttl;
    if (ttl !== undefined && ttl !== '5m' && ttl !== '1h')
      return `${where}.cache_control.ttl: Input should be '5m' or '1h'`;
  }
  return undefined;
}

/** Checks a Messages body the way the API does; returns the invalid_request_error message, if any. */
export function validateMessagesRequest(body: unknown): string | undefined {
  if (!isRecord(body)) return 'body: Input should be a valid dictionary';
  if (typeof body.model !== 'string' || body.model.length === 0) return 'model: Field required';
  if (body.max_tokens === undefined) return 'max_tokens: Field required';
  if (typeof body.max_tokens !== 'number' || !Number.isInteger(body.max_tokens))
    return 'max_tokens: Input should be a valid integer';
  if (body.max_tokens < 1) return 'max_tokens: Input should be greater than or equal to 1';
  if (body.stream === true) return 'stream: streaming is not implemented by this stand-in';
  if (body.messages === undefined) return 'messages: Field required';
  if (!Array.isArray(body.messages)) return 'messages: Input should be a valid list';
  if (body.messages.length === 0) return 'messages: at least one message is required';
  let breakpoints = 0;
  let shorterSeen = false;
  let ttlProblem: string | undefined;
  const countBreakpoint = (block: unknown): void => {
    if (!(isRecord(block) && isRecord(block.cache_control))) return;
    breakpoints += 1;
    // The API's rule for mixed TTLs: a 1-hour breakpoint may not follow a 5-minute one.
    if (block.cache_control.ttl === '1h' && shorterSeen)
      ttlProblem ??=
        "cache_control: a ttl='1h' cache_control block must not come after a ttl='5m' one (longer TTLs first)";
    if (block.cache_control.ttl !== '1h') shorterSeen = true;
  };
  if (body.system !== undefined) {
    if (Array.isArray(body.system)) {
      for (const [i, block] of body.system.entries()) {
        const problem = validTextBlock(block, `system.${i}`);
        if (problem) return problem;
        countBreakpoint(block);
      }
    } else if (typeof body.system !== 'string') {
      return 'system: Input should be a valid string or list of text blocks';
    }
  }
  for (const [i, message] of body.messages.entries()) {
    if (!isRecord(message)) return `messages.${i}: Input should be a valid dictionary`;
    if (message.role !== 'user' && message.role !== 'assistant')
      return `messages.${i}.role: Input should be 'user' or 'assistant'`;
    if (typeof message.content === 'string') {
      if (message.content.length === 0 && i < body.messages.length - 1)
        return `messages.${i}: all messages must have non-empty content`;
    } else if (Array.isArray(message.content)) {
      for (const [j, block] of message.content.entries()) {
        const problem = validTextBlock(block, `messages.${i}.content.${j}`);
        if (problem) return problem;
        countBreakpoint(block);
      }
    } else {
      return `messages.${i}.content: Input should be a valid string or list of content blocks`;
    }
  }
  if (body.messages[0]?.role !== 'user') return 'messages: first message must use the "user" role';
  if (breakpoints > MAX_CACHE_BREAKPOINTS)
    return `A maximum of ${MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. Found ${breakpoints}.`;
  return ttlProblem;
}

interface Segment {
  text: string;
  /** The breakpoint's TTL when the block carries `cache_control`. */
  breakpoint?: '5m' | '1h';
}

function segmentsOf(request: FakeMessagesRequest): Segment[] {
  const segments: Segment[] = [];
  const blocks = (content: string | TextBlock[]): void => {
    if (typeof content === 'string') segments.push({ text: content });
    else
      for (const block of content)
        segments.push(
          block.cache_control != null
            ? { text: block.text, breakpoint: block.cache_control.ttl ?? '5m' }
            : { text: block.text },
        );
  };
  if (request.system !== undefined) blocks(request.system);
  for (const message of request.messages) blocks(message.content);
  return segments;
}

export function startAnthropicFake(options: AnthropicFakeOptions = {}): Promise<AnthropicFake> {
  const responder = options.responder ?? echoAnalysis;
  const pollsToComplete = options.batchPollsToComplete ?? 2;
  const calls: RecordedCall[] = [];
  const queue: Behaviour[] = [];
  const batchQueue: Behaviour[] = [];
  const batches = new Map<string, Batch>();
  // Prompt prefixes written to the cache, per model (a cache entry belongs to one model, as in the API) → expiry,
  // and the TTL the entry was written with (a read refreshes it by that TTL).
  const cache = new Map<string, { expiresMs: number; ttlMs: number }>();
  const now = options.now ?? Date.now;
  const minimumOf = options.minCacheableTokens ?? minimumCacheableTokens;
  const callOf = new WeakMap<ServerResponse, RecordedCall>();
  let inFlight = 0;
  let maxInFlight = 0;
  let baseUrl = '';

  function usageFor(request: FakeMessagesRequest, outputTokens: number, tier: Usage['service_tier']): Usage {
    const segments = segmentsOf(request);
    const overhead = REQUEST_OVERHEAD_TOKENS + MESSAGE_OVERHEAD_TOKENS * request.messages.length;
    // Tokens of the prefix ending with each segment.
    const through: number[] = [];
    segments.forEach((s, i) => through.push((through[i - 1] ?? 0) + fakeTokens(s.text)));
    const total = through[through.length - 1] ?? 0;
    const minimum = minimumOf(request.model);
    const t = now();
    const keyOf = (i: number): string =>
      createHash('sha256')
        .update(JSON.stringify([request.model, segments.slice(0, i + 1).map((s) => s.text)]))
        .digest('hex');
    // Breakpoints whose prefix is long enough to cache; a shorter one is ignored, as the API ignores it.
    const eligible = segments.flatMap((s, i) => (s.breakpoint !== undefined && through[i]! >= minimum ? [i] : []));
    // Read: the longest prefix still cached.
    let readThrough = -1;
    for (const i of [...eligible].reverse()) {
      const entry = cache.get(keyOf(i));
      if (entry !== undefined && entry.expiresMs > t) {
        readThrough = i;
        break;
      }
    }
    const ttlOf = (i: number): number => CACHE_TTL_MS[segments[i]!.breakpoint ?? '5m'];
    // Breakpoints up to the read one are refreshed, each by the TTL its entry was written with (a read never turns
    // a 5-minute entry into an hour's); those beyond it are written, each span billed at its own breakpoint's TTL
    // (the API's mixed-TTL rule: 1-hour tokens up to the last 1-hour breakpoint, 5-minute tokens after it).
    let written5m = 0;
    let written1h = 0;
    let previous = readThrough >= 0 ? through[readThrough]! : 0;
    for (const i of eligible) {
      const key = keyOf(i);
      const entry = cache.get(key);
      if (i <= readThrough) {
        const ttlMs = entry !== undefined && entry.expiresMs > t ? entry.ttlMs : ttlOf(i);
        cache.set(key, { expiresMs: t + ttlMs, ttlMs });
        continue;
      }
      cache.set(key, { expiresMs: t + ttlOf(i), ttlMs: ttlOf(i) });
      if (segments[i]!.breakpoint === '1h') written1h += through[i]! - previous;
      else written5m += through[i]! - previous;
      previous = through[i]!;
    }
    const written = written5m + written1h;
    const read = readThrough >= 0 ? through[readThrough]! : 0;
    return {
      input_tokens: total - read - written + overhead,
      output_tokens: outputTokens,
      cache_creation_input_tokens: written,
      cache_read_input_tokens: read,
      cache_creation: { ephemeral_5m_input_tokens: written5m, ephemeral_1h_input_tokens: written1h },
      service_tier: tier,
    };
  }

  function message(request: FakeMessagesRequest, text: string, tier: Usage['service_tier']): Record<string, unknown> {
    // Like the API, a reply longer than max_tokens is cut off and says so.
    const limit = request.max_tokens * 4;
    const truncated = text.length > limit;
    const body = truncated ? text.slice(0, limit) : text;
    return {
      id: id('msg_'),
      type: 'message',
      role: 'assistant',
      model: request.model,
      content: [{ type: 'text', text: body }],
      stop_reason: truncated ? 'max_tokens' : 'end_turn',
      stop_sequence: null,
      usage: usageFor(request, fakeTokens(body), tier),
    };
  }

  function replyText(request: FakeMessagesRequest, behaviour: Behaviour): string {
    if (behaviour.kind === 'malformed') return behaviour.text ?? MALFORMED_TEXT;
    if (behaviour.kind === 'ok' && typeof behaviour.text === 'string') return behaviour.text;
    if (behaviour.kind === 'ok' && typeof behaviour.text === 'function') return behaviour.text(request);
    return responder(request);
  }

  function errorFor(behaviour: Behaviour): ErrorSpec | undefined {
    switch (behaviour.kind) {
      case 'rate-limit':
        return {
          status: 429,
          type: 'rate_limit_error',
          message:
            'This request would exceed the rate limit for your organization of 50 requests per minute. Please reduce the prompt length or the maximum tokens requested, or try again later.',
          headers: {
            'retry-after': behaviour.retryAfter ?? '7',
            'anthropic-ratelimit-requests-limit': '50',
            'anthropic-ratelimit-requests-remaining': '0',
          },
        };
      case 'spend-limit': {
        const regain = new Date();
        regain.setUTCMonth(regain.getUTCMonth() + 1, 1);
        return {
          status: 429,
          type: 'rate_limit_error',
          message: `You have reached your specified API usage limits. You will regain access on ${regain.toISOString().slice(0, 10)} at 00:00 UTC.`,
          details: { error_code: behaviour.errorCode ?? 'enforced_spend_limit_reached' },
          headers: behaviour.retryAfter === undefined ? {} : { 'retry-after': behaviour.retryAfter },
        };
      }
      case 'overloaded':
        return {
          status: 529,
          type: 'overloaded_error',
          message: 'Overloaded',
          headers: behaviour.retryAfter === undefined ? {} : { 'retry-after': behaviour.retryAfter },
        };
      case 'server-error':
        return { status: 500, type: 'api_error', message: 'Internal server error' };
      default:
        return undefined;
    }
  }

  function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    const call = callOf.get(res);
    if (call !== undefined) {
      call.status = status;
      call.response = body;
    }
    const requestId = id('req_');
    res.writeHead(status, { 'content-type': 'application/json', 'request-id': requestId, ...headers });
    res.end(JSON.stringify(body));
  }

  function sendError(res: ServerResponse, spec: ErrorSpec): void {
    const error: Record<string, unknown> = { type: spec.type, message: spec.message };
    if (spec.details) error.details = spec.details;
    send(res, spec.status, { type: 'error', error, request_id: id('req_') }, spec.headers);
  }

  function invalid(res: ServerResponse, message: string): void {
    sendError(res, { status: 400, type: 'invalid_request_error', message });
  }

  function batchView(batch: Batch): Record<string, unknown> {
    const ended = batch.endedAt !== null;
    const counts = { processing: ended ? 0 : batch.results.length, succeeded: 0, errored: 0, canceled: 0, expired: 0 };
    if (ended) for (const { result } of batch.results) counts[result.type] += 1;
    return {
      id: batch.id,
      type: 'message_batch',
      processing_status: ended ? 'ended' : 'in_progress',
      request_counts: counts,
      ended_at: batch.endedAt?.toISOString() ?? null,
      created_at: batch.createdAt.toISOString(),
      expires_at: new Date(batch.createdAt.getTime() + 24 * 3_600_000).toISOString(),
      archived_at: null,
      cancel_initiated_at: null,
      results_url: ended ? `${baseUrl}/v1/messages/batches/${batch.id}/results` : null,
    };
  }

  function batchItem(request: unknown): { result: BatchResult; behaviour?: BehaviourKind } {
    const problem = validateMessagesRequest(request);
    if (problem !== undefined) {
      return {
        result: {
          type: 'errored',
          error: { type: 'error', error: { type: 'invalid_request_error', message: problem }, request_id: id('req_') },
        },
      };
    }
    const params = request as FakeMessagesRequest;
    const behaviour = batchQueue.shift() ?? { kind: 'ok' };
    if (behaviour.kind === 'timeout') return { result: { type: 'expired' }, behaviour: behaviour.kind };
    const error = errorFor(behaviour);
    if (error !== undefined) {
      const body: { type: string; message: string; details?: Record<string, string> } = {
        type: error.type,
        message: error.message,
      };
      if (error.details) body.details = error.details;
      return {
        result: { type: 'errored', error: { type: 'error', error: body, request_id: id('req_') } },
        behaviour: behaviour.kind,
      };
    }
    return {
      result: { type: 'succeeded', message: message(params, replyText(params, behaviour), 'batch') },
      behaviour: behaviour.kind,
    };
  }

  function handle(req: IncomingMessage, res: ServerResponse, raw: string): void {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const method = req.method ?? 'GET';
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(req.headers)) if (typeof value === 'string') headers[name] = value;
    let body: unknown;
    const call: RecordedCall = { method, path, headers, body: undefined };
    calls.push(call);
    callOf.set(res, call);

    if (!headers['x-api-key'] && !headers.authorization) {
      return sendError(res, { status: 401, type: 'authentication_error', message: 'x-api-key header is required' });
    }
    if (!headers['anthropic-version']) return invalid(res, 'anthropic-version: header is required');
    if (raw.length > 0) {
      try {
        body = JSON.parse(raw);
      } catch {
        return invalid(res, 'The request body is not valid JSON.');
      }
    }
    call.body = body;

    if (method === 'POST' && path === '/v1/messages') {
      const problem = validateMessagesRequest(body);
      if (problem !== undefined) return invalid(res, problem);
      const request = body as FakeMessagesRequest;
      const behaviour = queue.shift() ?? { kind: 'ok' };
      call.behaviour = behaviour.kind;
      inFlight += 1;
      maxInFlight = Math.max(maxInFlight, inFlight);
      res.once('close', () => void (inFlight -= 1));
      // Hangs until the client aborts; `close()` destroys the socket if it never does.
      if (behaviour.kind === 'timeout') return;
      const error = errorFor(behaviour);
      if (error !== undefined) return sendError(res, error);
      const reply = message(request, replyText(request, behaviour), 'standard');
      if (behaviour.kind === 'ok' && behaviour.delayMs !== undefined)
        return void setTimeout(() => send(res, 200, reply), behaviour.delayMs);
      return send(res, 200, reply);
    }

    if (method === 'POST' && path === '/v1/messages/batches') {
      if (!isRecord(body) || !Array.isArray(body.requests)) return invalid(res, 'requests: Field required');
      if (body.requests.length === 0) return invalid(res, 'requests: List should have at least 1 item');
      const seen = new Set<string>();
      for (const [i, item] of body.requests.entries()) {
        if (!isRecord(item) || typeof item.custom_id !== 'string' || !CUSTOM_ID.test(item.custom_id)) {
          return invalid(res, `requests.${i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{1,64}$'`);
        }
        if (seen.has(item.custom_id))
          return invalid(res, `requests.${i}.custom_id: custom_id '${item.custom_id}' is not unique`);
        seen.add(item.custom_id);
        if (!isRecord(item.params)) return invalid(res, `requests.${i}.params: Field required`);
      }
      const batch: Batch = { id: id('msgbatch_'), createdAt: new Date(), polls: 0, endedAt: null, results: [] };
      call.batchBehaviours = [];
      for (const item of body.requests as Array<{ custom_id: string; params: unknown }>) {
        const { result, behaviour } = batchItem(item.params);
        if (behaviour) call.batchBehaviours.push(behaviour);
        batch.results.push({ custom_id: item.custom_id, result });
      }
      batches.set(batch.id, batch);
      return send(res, 200, batchView(batch));
    }

    const match = /^\/v1\/messages\/batches\/([A-Za-z0-9_]+)(\/results)?$/.exec(path);
    if (method === 'GET' && match) {
      const batch = batches.get(match[1] ?? '');
      if (batch === undefined)
        return sendError(res, {
          status: 404,
          type: 'not_found_error',
          message: `No message batch with id ${match[1]}`,
        });
      if (match[2] === undefined) {
        batch.polls += 1;
        if (batch.endedAt === null && batch.polls >= pollsToComplete) batch.endedAt = new Date();
        return send(res, 200, batchView(batch));
      }
      if (batch.endedAt === null)
        return invalid(res, `Message batch ${batch.id} is still processing; results are available once it has ended.`);
      // Results come in no particular order in the API; reversed here so clients must match on custom_id.
      const lines = [...batch.results].reverse().map((r) => JSON.stringify(r));
      call.status = 200;
      call.response = [...batch.results].reverse();
      res.writeHead(200, { 'content-type': 'application/x-jsonl', 'request-id': id('req_') });
      res.end(`${lines.join('\n')}\n`);
      return;
    }

    sendError(res, { status: 404, type: 'not_found_error', message: `${method} ${path} is not a known endpoint` });
  }

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => handle(req, res, Buffer.concat(chunks).toString('utf8')));
  });

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      baseUrl = `http://127.0.0.1:${port}`;
      resolve({
        url: baseUrl,
        calls,
        get maxInFlight() {
          return maxInFlight;
        },
        script: (behaviours) => void queue.push(...behaviours),
        scriptBatch: (behaviours) => void batchQueue.push(...behaviours),
        close: () =>
          new Promise<void>((done) => {
            server.closeAllConnections();
            server.close(() => done());
          }),
      });
    });
  });
}
