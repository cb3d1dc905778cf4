import { describe, expect, it } from 'vitest';
import { AgentStreamsError, ErrorCode } from '../../../runtime/errors.ts';
import { retry } from '../../../runtime/retry.ts';
import {
  circuitTransitions,
  CircuitState,
  createCircuitBreaker,
  type CircuitTransition,
} from '../../../runtime/llm/index.ts';
import { finding, harness, manualClock, messagesCalls } from './support.ts';

function breaker(threshold = 3, cooldownMs = 1_000) {
  const clock = manualClock();
  const transitions: CircuitTransition[] = [];
  const circuit = createCircuitBreaker({
    failureThreshold: threshold,
    cooldownMs,
    now: clock.now,
    onTransition: (t) => void transitions.push(t),
  });
  const moves = (): string[] => transitions.map((t) => `${t.from}→${t.to}`);
  return { circuit, clock, moves };
}

describe('circuit breaker state machine', () => {
  it('has a transitions table without shortcuts', () => {
    expect(circuitTransitions).toEqual({
      closed: ['open'],
      open: ['half-open', 'open'],
      'half-open': ['closed', 'open'],
    });
    expect(Object.isFrozen(circuitTransitions)).toBe(true);
  });

  it('opens after K consecutive failures; a success in between resets the count', () => {
    const { circuit, moves } = breaker(3);
    const fail = (): void => circuit.failure(circuit.tryAcquire()!, 'boom');
    fail();
    fail();
    circuit.success(circuit.tryAcquire()!);
    fail();
    fail();
    expect(circuit.state).toBe(CircuitState.CLOSED);
    fail();
    expect(circuit.state).toBe(CircuitState.OPEN);
    expect(circuit.tryAcquire()).toBeUndefined();
    expect(moves()).toEqual(['closed→open']);
  });

  it('half-opens after the cool-down and lets exactly one probe through', () => {
    const { circuit, clock, moves } = breaker(1, 1_000);
    circuit.failure(circuit.tryAcquire()!, 'boom');
    clock.advance(999);
    expect(circuit.state).toBe(CircuitState.OPEN);
    clock.advance(1);
    expect(circuit.state).toBe(CircuitState.HALF_OPEN);
    const probe = circuit.tryAcquire();
    expect(probe).toMatchObject({ probe: true });
    expect(circuit.tryAcquire()).toBeUndefined();
    circuit.success(probe!);
    expect(circuit.state).toBe(CircuitState.CLOSED);
    expect(moves()).toEqual(['closed→open', 'open→half-open', 'half-open→closed']);
  });

  it('reopens when the probe fails', () => {
    const { circuit, clock, moves } = breaker(1, 1_000);
    circuit.failure(circuit.tryAcquire()!, 'boom');
    clock.advance(1_000);
    circuit.failure(circuit.tryAcquire()!, 'still down');
    expect(circuit.state).toBe(CircuitState.OPEN);
    expect(circuit.openUntilMs).toBe(clock.now() + 1_000);
    expect(moves()).toEqual(['closed→open', 'open→half-open', 'half-open→open']);
  });

  it('frees the probe when its call says nothing about the API (released)', () => {
    const { circuit, clock } = breaker(1, 1_000);
    circuit.failure(circuit.tryAcquire()!, 'boom');
    clock.advance(1_000);
    circuit.release(circuit.tryAcquire()!);
    expect(circuit.state).toBe(CircuitState.HALF_OPEN);
    expect(circuit.tryAcquire()).toMatchObject({ probe: true });
  });

  it('ignores late verdicts from calls let through before the state changed', () => {
    const { circuit, clock, moves } = breaker(1, 1_000);
    const early = circuit.tryAcquire()!;
    const other = circuit.tryAcquire()!;
    circuit.failure(other, 'boom');
    circuit.success(early);
    expect(circuit.state).toBe(CircuitState.OPEN);
    clock.advance(1_000);
    const probe = circuit.tryAcquire()!;
    circuit.failure(early, 'late');
    expect(circuit.state).toBe(CircuitState.HALF_OPEN);
    circuit.success(probe);
    expect(moves()).toEqual(['closed→open', 'open→half-open', 'half-open→closed']);
  });

  it('trips open at once, re-arms without shortening, and repeated verdicts are idempotent', () => {
    const { circuit, clock, moves } = breaker(5, 1_000);
    circuit.trip('spend limit', 60_000);
    const until = circuit.openUntilMs;
    expect(until).toBe(clock.now() + 60_000);
    circuit.trip('again, shorter', 1_000);
    expect(circuit.openUntilMs).toBe(until);
    expect(circuit.state).toBe(CircuitState.OPEN);
    clock.advance(60_000);
    const probe = circuit.tryAcquire()!;
    circuit.success(probe);
    circuit.success(probe);
    expect(circuit.state).toBe(CircuitState.CLOSED);
    expect(moves()).toEqual(['closed→open', 'open→open', 'open→half-open', 'half-open→closed']);
  });

  it('refuses invalid options', () => {
    try {
      createCircuitBreaker({ failureThreshold: 0 });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(AgentStreamsError);
      expect((error as AgentStreamsError).code).toBe(ErrorCode.LLM_OPTIONS_INVALID);
    }
  });
});

describe('circuit breaker in the LLM service', () => {
  it('opens after consecutive failed requests, fails fast while open, probes after the cool-down and closes', async () => {
    const { fake, llm, audits, clock, logs } = await harness({
      retry: retry({ initialMs: 10, maxMs: 10, jitter: 0, maxAttempts: 1 }),
      circuit: { failureThreshold: 2, cooldownMs: 10_000 },
    });
    fake.script([{ kind: 'overloaded' }, { kind: 'server-error' }]);
    expect((await llm.analyzeFinding(finding({ id: 'a' }))).reason).toMatch(/^overloaded/);
    expect(llm.circuitState).toBe('closed');
    expect((await llm.analyzeFinding(finding({ id: 'b' }))).reason).toMatch(/^API error: 500/);
    expect(llm.circuitState).toBe('open');

    const refused = await llm.analyzeFinding(finding({ id: 'c' }));
    expect(refused).toMatchObject({ model: 'rules-only' });
    expect(refused.reason).toMatch(
      /^circuit open: recent Anthropic API calls failed; next probe after 2026-01-05T10:00:10.000Z/,
    );
    expect(messagesCalls(fake)).toHaveLength(2);

    clock.advance(10_000);
    expect(llm.circuitState).toBe('half-open');
    expect((await llm.analyzeFinding(finding({ id: 'd' }))).reason).toBeUndefined();
    expect(llm.circuitState).toBe('closed');
    expect(audits.map((a) => a.outcome)).toEqual(['overloaded', 'error', 'circuit-open', 'ok']);
    expect(logs.filter((l) => l.includes('circuit'))).toEqual([
      expect.stringMatching(/circuit closed → open \(2 consecutive failures, last: API error: 500/),
      'llm: circuit open → half-open (cool-down over)',
      'llm: circuit half-open → closed (probe succeeded)',
    ]);
  });

  it('does not count invalid output or refused calls as API failures', async () => {
    const { fake, llm } = await harness({
      circuit: { failureThreshold: 1 },
      budgets: { default: { tokensPerHour: 100_000 } },
    });
    fake.script([{ kind: 'malformed' }, { kind: 'malformed' }]);
    await llm.analyzeFinding(finding());
    expect(llm.circuitState).toBe('closed');
  });
});
