/**
 * The circuit breaker in front of the Anthropic API, as an explicit state machine: a transitions table and one guard
 * through which every change passes. Closed lets calls through and counts consecutive failures; at the threshold it
 * opens for a cool-down, during which calls fail fast (and callers get their fallback); after it one probe is
 * let through (half-open), whose verdict closes or reopens the circuit.
 *
 * Calls hold a permit stamped with the generation in which they were let through, so the late verdict of a call that
 * started before the circuit changed state cannot close or reopen it by accident.
 */
import { AgentStreamsError, ErrorCode } from '../errors.ts';

export const CircuitState = {
  CLOSED: 'closed',
  OPEN: 'open',
  HALF_OPEN: 'half-open',
} as const;
export type CircuitState = (typeof CircuitState)[keyof typeof CircuitState];

/** Allowed moves. open → open re-arms the cool-down (a spend limit seen while already open). */
export const circuitTransitions: Readonly<Record<CircuitState, readonly CircuitState[]>> = Object.freeze({
  [CircuitState.CLOSED]: [CircuitState.OPEN],
  [CircuitState.OPEN]: [CircuitState.HALF_OPEN, CircuitState.OPEN],
  [CircuitState.HALF_OPEN]: [CircuitState.CLOSED, CircuitState.OPEN],
});

export interface CircuitPermit {
  readonly generation: number;
  readonly probe: boolean;
}

export interface CircuitTransition {
  from: CircuitState;
  to: CircuitState;
  reason: string;
  /** Until when calls are refused, for transitions to open. */
  openUntilMs?: number;
}

export interface CircuitBreakerOptions {
  /** Consecutive failures that open the circuit; default 5. */
  failureThreshold?: number;
  /** How long an opened circuit refuses calls before it probes; default 30 s. */
  cooldownMs?: number;
  now?: () => number;
  onTransition?: (transition: CircuitTransition) => void;
}

export interface CircuitBreaker {
  /** The state now; an open circuit whose cool-down has passed reads as half-open. */
  readonly state: CircuitState;
  /** A permit to call, or undefined when the call must not be made (open, or the half-open probe is taken). */
  tryAcquire(): CircuitPermit | undefined;
  success(permit: CircuitPermit): void;
  failure(permit: CircuitPermit, reason: string): void;
  /** The call ended without saying anything about the API's health (refused by budget, bad request): frees the probe. */
  release(permit: CircuitPermit): void;
  /** Opens at once, whatever the state, e.g. on a spend limit; `cooldownMs` overrides the default cool-down. */
  trip(reason: string, cooldownMs?: number): void;
  readonly openUntilMs: number | undefined;
}

export function createCircuitBreaker(options: CircuitBreakerOptions = {}): CircuitBreaker {
  const threshold = options.failureThreshold ?? 5;
  const defaultCooldownMs = options.cooldownMs ?? 30_000;
  const now = options.now ?? Date.now;
  if (
    !(Number.isInteger(threshold) && threshold >= 1) ||
    !(Number.isFinite(defaultCooldownMs) && defaultCooldownMs >= 0)
  ) {
    throw new AgentStreamsError(
      ErrorCode.LLM_OPTIONS_INVALID,
      `Invalid circuit breaker options: failureThreshold must be a whole number >= 1 (got ${threshold}) and cooldownMs a finite number >= 0 (got ${defaultCooldownMs}).`,
    );
  }

  let state: CircuitState = CircuitState.CLOSED;
  let generation = 0;
  let failures = 0;
  let openUntilMs: number | undefined;
  let probeTaken = false;

  /** The guard: the only place `state` changes. Moving to the current state is a no-op (idempotent), except open → open. */
  function transition(to: CircuitState, reason: string, cooldownMs = defaultCooldownMs): void {
    if (to === state && to !== CircuitState.OPEN) return;
    if (!circuitTransitions[state].includes(to)) {
      throw new AgentStreamsError(
        ErrorCode.LLM_CIRCUIT_TRANSITION,
        `Circuit breaker cannot go from ${state} to ${to} (${reason}); this is a bug in the LLM service.`,
        {
          details: { from: state, to, reason },
        },
      );
    }
    const from = state;
    state = to;
    generation += 1;
    failures = 0;
    probeTaken = false;
    if (to === CircuitState.OPEN) {
      // Re-arming never shortens a cool-down already running (a spend-limit trip outlasts a later ordinary one).
      const until = now() + cooldownMs;
      openUntilMs = from === CircuitState.OPEN && openUntilMs !== undefined ? Math.max(openUntilMs, until) : until;
    } else {
      openUntilMs = undefined;
    }
    options.onTransition?.({ from, to, reason, ...(to === CircuitState.OPEN ? { openUntilMs } : {}) });
  }

  function current(): CircuitState {
    if (state === CircuitState.OPEN && openUntilMs !== undefined && now() >= openUntilMs)
      transition(CircuitState.HALF_OPEN, 'cool-down over');
    return state;
  }

  const fresh = (permit: CircuitPermit): boolean => permit.generation === generation;

  return {
    get state() {
      return current();
    },
    get openUntilMs() {
      current();
      return openUntilMs;
    },
    tryAcquire() {
      switch (current()) {
        case CircuitState.CLOSED:
          return { generation, probe: false };
        case CircuitState.HALF_OPEN:
          if (probeTaken) return undefined;
          probeTaken = true;
          return { generation, probe: true };
        default:
          return undefined;
      }
    },
    success(permit) {
      if (!fresh(permit)) return;
      if (state === CircuitState.HALF_OPEN && permit.probe) transition(CircuitState.CLOSED, 'probe succeeded');
      else if (state === CircuitState.CLOSED) failures = 0;
    },
    failure(permit, reason) {
      if (!fresh(permit)) return;
      if (state === CircuitState.HALF_OPEN && permit.probe)
        return transition(CircuitState.OPEN, `probe failed: ${reason}`);
      if (state !== CircuitState.CLOSED) return;
      failures += 1;
      if (failures >= threshold) transition(CircuitState.OPEN, `${failures} consecutive failures, last: ${reason}`);
    },
    release(permit) {
      if (fresh(permit) && permit.probe && state === CircuitState.HALF_OPEN) probeTaken = false;
    },
    trip(reason, cooldownMs) {
      current();
      // From closed or half-open straight to open; from open, re-arm.
      transition(CircuitState.OPEN, reason, cooldownMs ?? defaultCooldownMs);
    },
  };
}
