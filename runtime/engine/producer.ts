/**
 * Producers that ride out a broker outage: the one home of `kafka.outageToleranceMs` (AS_KAFKA_OUTAGE_TOLERANCE_MS).
 *
 * Producers outside the engine's batch transaction (connectors, re-drive) used to fail on the first
 * `ECONNREFUSED` once kafkajs' own few retries were spent. Here each kafkajs attempt is kept short and our one
 * retry policy (runtime/retry.ts) repeats it until the broker answers again, for at most `outageToleranceMs` from
 * the first failure of the outage; after that the caller gets `AS_BROKER_UNAVAILABLE`, naming the setting.
 *
 * Nothing is duplicated by those retries:
 * - `IdempotentProducer.send` repeats the *same* records (same per-partition batches, since the caller serialises
 *   sends and the partitioner is a function of the key) through the *same* idempotent producer. kafkajs advances a
 *   partition's sequence number only when the broker acknowledged the batch, so a batch the broker wrote before it
 *   died (response lost) carries the sequence it already has and is answered as a duplicate, not written again.
 *   The broker rebuilds that producer state from its log after a crash.
 * - `TransactionalProducer.run` puts a unit of work (an HTTP request, a re-driven dead letter) in one transaction.
 *   A failure before the commit aborts it (read_committed readers never see its records). A failure *during* the
 *   commit is ambiguous, so the caller supplies `committed()`, a probe on state written in the same transaction
 *   (a consumer-group offset); it is asked only after a new producer with the same transactional id has been
 *   initialised, which makes the coordinator finish the old transaction one way or the other.
 */
import type { ProducerRecord, RecordMetadata } from 'kafkajs';
import type { KafkaPort, KafkaProducer, KafkaTransaction } from '../../runtime/kafka/port.ts';
import { AgentStreamsError, ErrorCode, isAgentStreamsError } from '../errors.ts';
import { retry, withRetry, type RetryPolicy } from '../retry.ts';

/** How the setting is named in messages: the config path and the environment variable that sets it. */
export const OUTAGE_TOLERANCE_SETTING = 'kafka.outageToleranceMs (AS_KAFKA_OUTAGE_TOLERANCE_MS)';

/**
 * kafkajs' own retries for one attempt: short, so that our policy, not kafkajs', decides how long an outage is
 * ridden out (its default gives up after ~10 s whatever the setting says).
 */
export const ATTEMPT_RETRY = { retries: 2, initialRetryTime: 100, maxRetryTime: 1000 } as const;

/** Between attempts while the broker is away. */
export const OUTAGE_RETRY: RetryPolicy = retry({ initialMs: 200, maxMs: 2000, factor: 2, jitter: 0.2 });

const OUTAGE_ERRORS = new Set([
  'KafkaJSConnectionError',
  'KafkaJSConnectionClosedError',
  'KafkaJSRequestTimeoutError',
  'KafkaJSBrokerNotFound',
  'KafkaJSNoBrokerAvailableError',
  'KafkaJSMetadataNotLoaded',
  'KafkaJSTopicMetadataNotLoaded',
  'KafkaJSGroupCoordinatorNotFound',
  'KafkaJSLockTimeout',
]);
/** Protocol errors a restarting broker answers with (leadership and coordinators move while it loads). */
const OUTAGE_PROTOCOL_ERRORS = new Set([
  'LEADER_NOT_AVAILABLE',
  'NOT_LEADER_FOR_PARTITION',
  'NOT_LEADER_OR_FOLLOWER',
  'COORDINATOR_NOT_AVAILABLE',
  'COORDINATOR_LOAD_IN_PROGRESS',
  'NOT_COORDINATOR',
  'NOT_ENOUGH_REPLICAS',
  'NOT_ENOUGH_REPLICAS_AFTER_APPEND',
  'REQUEST_TIMED_OUT',
  'NETWORK_EXCEPTION',
  'CONCURRENT_TRANSACTIONS',
  'UNKNOWN_TOPIC_OR_PARTITION',
  'KAFKA_STORAGE_ERROR',
]);

/** True when `error` (or an error it wraps) says the broker could not be reached or is not serving yet. */
export function isBrokerOutage(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e && typeof e === 'object' && depth < 8; depth += 1) {
    const { name, type } = e as { name?: string; type?: string };
    if (isAgentStreamsError(e, ErrorCode.BROKER_UNAVAILABLE) && e.retriable) return true;
    if (typeof name === 'string' && OUTAGE_ERRORS.has(name)) return true;
    if (name === 'KafkaJSProtocolError' && typeof type === 'string' && OUTAGE_PROTOCOL_ERRORS.has(type)) return true;
    if (/ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|EHOSTUNREACH/.test(String((e as Error).message))) return true;
    e = (e as { cause?: unknown; originalError?: unknown }).cause ?? (e as { originalError?: unknown }).originalError;
  }
  return false;
}

export interface OutageOptions {
  /** `config.kafka.outageToleranceMs`. */
  outageToleranceMs: number;
  /** Default OUTAGE_RETRY. */
  policy?: RetryPolicy;
  log?: (line: string) => void;
  now?: () => number;
}

/** When the current outage began, shared by everything one producer does, so the tolerance is per outage. */
export class OutageClock {
  private since: number | undefined;
  constructor(private readonly now: () => number = Date.now) {}
  /** Milliseconds the broker has been away; 0 when it is not. */
  get downForMs(): number {
    return this.since === undefined ? 0 : this.now() - this.since;
  }
  get down(): boolean {
    return this.since !== undefined;
  }
  markDown(): void {
    this.since ??= this.now();
  }
  markUp(): void {
    this.since = undefined;
  }
}

export function brokerUnavailable(
  what: string,
  downForMs: number,
  toleranceMs: number,
  cause: unknown,
): AgentStreamsError {
  return new AgentStreamsError(
    ErrorCode.BROKER_UNAVAILABLE,
    `Kafka could not be reached for ${(downForMs / 1000).toFixed(1)} s while ${what}, longer than ${OUTAGE_TOLERANCE_SETTING} = ${toleranceMs} ms ` +
      `(last error: ${(cause as Error)?.message ?? String(cause)}). Bring the broker back, or raise AS_KAFKA_OUTAGE_TOLERANCE_MS to ride out longer outages.`,
    {
      cause,
      details: {
        setting: 'kafka.outageToleranceMs',
        env: 'AS_KAFKA_OUTAGE_TOLERANCE_MS',
        outageToleranceMs: toleranceMs,
        downForMs,
      },
    },
  );
}

/**
 * Runs `fn` until it succeeds; a broker outage is retried with the policy for up to `outageToleranceMs` (counted on
 * `clock` from the outage's first failure), then becomes `AS_BROKER_UNAVAILABLE`. Other errors are rethrown at once.
 */
export async function rideOutage<T>(
  what: string,
  fn: () => Promise<T>,
  options: OutageOptions,
  clock = new OutageClock(options.now),
): Promise<T> {
  const log = options.log ?? (() => {});
  try {
    const result = await withRetry(fn, options.policy ?? OUTAGE_RETRY, {
      isRetriable: (error) => {
        if (!isBrokerOutage(error)) return false;
        clock.markDown();
        return clock.downForMs < options.outageToleranceMs;
      },
      onRetry: (error, attempt, delayMs) => {
        if (attempt === 1 || attempt % 10 === 0)
          log(
            `broker unavailable while ${what} (${(error as Error).message}); retrying for up to ${options.outageToleranceMs} ms (attempt ${attempt}, next in ${delayMs} ms)`,
          );
      },
    });
    if (clock.down) log(`broker back after ${clock.downForMs} ms; ${what} succeeded`);
    clock.markUp();
    return result;
  } catch (error) {
    if (isBrokerOutage(error) && !isAgentStreamsError(error, ErrorCode.BROKER_UNAVAILABLE)) {
      clock.markDown();
      throw brokerUnavailable(what, clock.downForMs, options.outageToleranceMs, error);
    }
    throw error;
  }
}

/** An idempotent producer whose sends ride out an outage; see the module comment for why retries duplicate nothing. */
export class IdempotentProducer {
  readonly clock: OutageClock;
  private readonly producer: KafkaProducer;

  constructor(
    kafka: KafkaPort,
    private readonly options: OutageOptions,
  ) {
    this.clock = new OutageClock(options.now);
    this.producer = kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
      retry: { ...ATTEMPT_RETRY },
    });
  }

  connect(): Promise<void> {
    return rideOutage('connecting the producer', () => this.producer.connect(), this.options, this.clock);
  }

  /**
   * Produces `record` with acks=all. Callers must not call `send` again before it settles (one batch in flight),
   * so that a retry carries exactly the batch the broker may already hold.
   */
  send(record: ProducerRecord): Promise<RecordMetadata[]> {
    const records = record.messages.length;
    return rideOutage(
      `producing ${records} records to ${record.topic}`,
      () => this.producer.send({ acks: -1, ...record }),
      this.options,
      this.clock,
    );
  }

  disconnect(): Promise<void> {
    return this.producer.disconnect();
  }
}

export type TransactionalState = 'ready' | 'recovering' | 'failed';

export interface TransactionRunOptions {
  /**
   * While the broker is away: false (default) rejects at once with a retriable `AS_BROKER_UNAVAILABLE` whose
   * `details.committed` is false (the HTTP gateway answers 503); true waits and runs the work again, within the
   * tolerance (re-drive).
   */
  wait?: boolean;
}

/**
 * A transactional producer that recovers from an outage by initialising a new producer with the same
 * transactional id (which fences the old one and completes its transaction). Runs one transaction at a time.
 */
export class TransactionalProducer {
  readonly clock: OutageClock;
  private producer: KafkaProducer | undefined;
  private recovering: Promise<void> | undefined;
  private failure: AgentStreamsError | undefined;
  private current: TransactionalState = 'recovering';
  private readonly failedListeners: Array<(error: AgentStreamsError) => void> = [];

  constructor(
    private readonly kafka: KafkaPort,
    readonly transactionalId: string,
    private readonly options: OutageOptions & { transactionTimeoutMs?: number },
  ) {
    this.clock = new OutageClock(options.now);
  }

  get state(): TransactionalState {
    return this.current;
  }

  /** Milliseconds a caller should wait before trying again while the broker is away. */
  get retryAfterMs(): number {
    return 2000;
  }

  /** Called once if an outage outlasts the tolerance: the producer is unusable from then on. */
  onFailed(listener: (error: AgentStreamsError) => void): void {
    if (this.failure) listener(this.failure);
    else this.failedListeners.push(listener);
  }

  private create(): KafkaProducer {
    return this.kafka.producer({
      transactionalId: this.transactionalId,
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
      transactionTimeout: this.options.transactionTimeoutMs ?? 60_000,
      retry: { ...ATTEMPT_RETRY },
    });
  }

  /** (Re)initialises the producer, riding out the outage; the old transaction is complete when this resolves. */
  private reinitialise(): Promise<void> {
    this.current = 'recovering';
    this.recovering ??= (async () => {
      const old = this.producer;
      this.producer = undefined;
      await old?.disconnect().catch(() => undefined);
      await rideOutage(
        `initialising transactional producer ${this.transactionalId}`,
        async () => {
          const producer = this.create();
          try {
            await producer.connect();
          } catch (error) {
            await producer.disconnect().catch(() => undefined);
            throw error;
          }
          this.producer = producer;
        },
        this.options,
        this.clock,
      );
      this.current = 'ready';
    })().then(
      () => {
        this.recovering = undefined;
      },
      (error: unknown) => {
        this.recovering = undefined;
        this.current = 'failed';
        this.failure = isAgentStreamsError(error)
          ? error
          : brokerUnavailable(
              'initialising the transactional producer',
              this.clock.downForMs,
              this.options.outageToleranceMs,
              error,
            );
        for (const listener of this.failedListeners.splice(0)) listener(this.failure);
        throw this.failure;
      },
    );
    return this.recovering;
  }

  connect(): Promise<void> {
    return this.reinitialise();
  }

  private unavailable(committed: boolean | 'unknown', cause?: unknown): AgentStreamsError {
    return new AgentStreamsError(
      ErrorCode.BROKER_UNAVAILABLE,
      committed === false
        ? 'Kafka is unavailable; nothing of this transaction was committed, so it is safe to retry.'
        : 'Kafka is unavailable; whether the transaction committed is not known yet.',
      { retriable: committed === false, cause, details: { committed, retryAfterMs: this.retryAfterMs } },
    );
  }

  /**
   * Runs `work` in one transaction and commits it. `committed` must tell, after the broker is back, whether this
   * transaction committed (it is asked only when the commit itself failed).
   */
  async run(
    work: (txn: KafkaTransaction) => Promise<void>,
    committed: () => Promise<boolean>,
    runOptions: TransactionRunOptions = {},
  ): Promise<void> {
    for (;;) {
      if (this.failure) throw this.failure;
      if (this.current !== 'ready' || !this.producer) {
        if (!runOptions.wait) throw this.unavailable(false);
        await (this.recovering ?? this.reinitialise());
        continue;
      }
      const producer = this.producer;
      let txn: KafkaTransaction;
      try {
        txn = await producer.transaction();
        await work(txn);
      } catch (error) {
        if (!isBrokerOutage(error)) {
          await this.abortOrReinitialise(error);
          throw error;
        }
        // Not committed, and never will be: the new producer's initialisation aborts it.
        this.clock.markDown();
        void this.reinitialise().catch(() => undefined);
        if (!runOptions.wait) throw this.unavailable(false, error);
        continue;
      }
      try {
        await txn.commit();
        this.clock.markUp();
        return;
      } catch (error) {
        if (!isBrokerOutage(error)) {
          await this.abortOrReinitialise(error);
          throw error;
        }
        this.clock.markDown();
        // Ambiguous: wait for the broker (the tolerance bounds it), then ask.
        try {
          await this.reinitialise();
          const done = await rideOutage(
            'checking whether a transaction committed',
            committed,
            this.options,
            this.clock,
          );
          if (done) return;
        } catch (failure) {
          throw isAgentStreamsError(failure, ErrorCode.BROKER_UNAVAILABLE)
            ? failure
            : this.unavailable('unknown', failure);
        }
        if (!runOptions.wait) throw this.unavailable(false, error);
      }
    }
  }

  private async abortOrReinitialise(cause: unknown): Promise<void> {
    // A transaction left open would hold back read_committed readers until it times out.
    void cause;
    await this.reinitialise().catch(() => undefined);
  }

  async disconnect(): Promise<void> {
    await this.recovering?.catch(() => undefined);
    await this.producer?.disconnect();
    this.producer = undefined;
  }
}
