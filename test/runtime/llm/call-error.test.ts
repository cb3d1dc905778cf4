import { RateLimitError, BadRequestError, OverloadedError } from '@anthropic-ai/sdk';
import { describe, expect, it } from 'vitest';
import { classifyApiError, isSpendLimit, parseRetryAfterMs } from '../../../runtime/llm/index.ts';

const now = Date.UTC(2026, 0, 5, 10);
const body = (type: string, message: string, details?: Record<string, string>) => ({
  type: 'error',
  error: { type, message, ...(details ? { details } : {}) },
  request_id: 'req_1',
});

describe('classifying API errors', () => {
  it('parses retry-after as seconds, an HTTP date or retry-after-ms', () => {
    expect(parseRetryAfterMs(new Headers({ 'retry-after': '2.5' }), now)).toBe(2_500);
    expect(parseRetryAfterMs(new Headers({ 'retry-after': new Date(now + 9_000).toUTCString() }), now)).toBe(9_000);
    expect(parseRetryAfterMs(new Headers({ 'retry-after': new Date(now - 9_000).toUTCString() }), now)).toBe(0);
    expect(parseRetryAfterMs(new Headers({ 'retry-after-ms': '120', 'retry-after': '9' }), now)).toBe(120);
    expect(parseRetryAfterMs(new Headers({ 'retry-after': 'soon' }), now)).toBeUndefined();
    expect(parseRetryAfterMs(new Headers(), now)).toBeUndefined();
  });

  it('tells a spend limit from a rate limit by error_code, or by message for older responses', () => {
    const headers = new Headers({ 'retry-after': '5' });
    expect(
      isSpendLimit(
        new RateLimitError(
          429,
          body('rate_limit_error', 'Limit.', { error_code: 'enforced_spend_limit_reached' }),
          undefined,
          headers,
        ),
      ),
    ).toBe(true);
    expect(
      isSpendLimit(
        new RateLimitError(
          429,
          body('rate_limit_error', 'You have reached your specified API usage limits.'),
          undefined,
          headers,
        ),
      ),
    ).toBe(true);
    expect(
      isSpendLimit(
        new BadRequestError(
          400,
          body('invalid_request_error', 'Your credit balance is too low to access the Anthropic API.'),
          undefined,
          headers,
        ),
      ),
    ).toBe(true);
    expect(
      isSpendLimit(
        new RateLimitError(
          429,
          body('rate_limit_error', 'This request would exceed the rate limit for your organization.'),
          undefined,
          headers,
        ),
      ),
    ).toBe(false);
  });

  it('makes spend limits non-retriable without retryAfterMs, rate limits and overload retriable with it', () => {
    const opts = { nowMs: now, maxRetryAfterMs: 60_000 };
    const spend = classifyApiError(
      new RateLimitError(
        429,
        body('rate_limit_error', 'x', { error_code: 'contract_spend_limit_reached' }),
        undefined,
        new Headers({ 'retry-after': '5' }),
      ),
      opts,
    );
    expect(spend).toMatchObject({ outcome: 'spend-limit', retriable: false, code: 'AS_LLM_SPEND_LIMIT' });
    expect(spend.retryAfterMs).toBeUndefined();
    const rate = classifyApiError(
      new RateLimitError(429, body('rate_limit_error', 'slow down'), undefined, new Headers({ 'retry-after': '5' })),
      opts,
    );
    expect(rate).toMatchObject({ outcome: 'rate-limited', retriable: true, retryAfterMs: 5_000 });
    const overloaded = classifyApiError(
      new OverloadedError(529, body('overloaded_error', 'Overloaded'), undefined, new Headers()),
      opts,
    );
    expect(overloaded).toMatchObject({ outcome: 'overloaded', retriable: true, code: 'AS_LLM_OVERLOADED' });
    expect(overloaded.retryAfterMs).toBeUndefined();
    const bad = classifyApiError(
      new BadRequestError(400, body('invalid_request_error', 'max_tokens: Field required'), undefined, new Headers()),
      opts,
    );
    expect(bad).toMatchObject({
      outcome: 'error',
      retriable: false,
      reason: 'API error: 400 max_tokens: Field required',
    });
  });
});
