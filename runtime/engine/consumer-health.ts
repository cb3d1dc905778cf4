/**
 * What a consumer-group member's liveness and readiness read from its kafkajs consumer, for the runner's members and
 * the ClickHouse sink alike: joined, rebalancing, crashed for good, and the last time it made progress.
 */
import type { IMemberAssignment } from 'kafkajs';
import type { KafkaConsumer } from '../../runtime/kafka/port.ts';

export interface ConsumerHealth {
  joined: boolean;
  rebalancing: boolean;
  /** Why the consumer stopped for good (kafkajs will not restart it); undefined while it runs. */
  crashed: string | undefined;
  /** When a batch last completed, or a fetch found nothing waiting (an idle member is not a stalled one). */
  lastProgress: number;
  /** Records waiting behind the last fetched batch, as that fetch saw them. */
  lag: number;
}

export function consumerHealth(now = Date.now()): ConsumerHealth {
  return { joined: false, rebalancing: false, crashed: undefined, lastProgress: now, lag: 0 };
}

/**
 * Keeps `health` up to date from the consumer's events, logs them (`group.rebalancing`, `consumer.crash`), and hands
 * each new assignment to `onJoin`, which logs `group.join` with what it took.
 */
export function watchConsumerHealth(
  consumer: KafkaConsumer,
  health: ConsumerHealth,
  log: (event: string, fields?: Record<string, unknown>) => void,
  onJoin: (assignment: IMemberAssignment) => void,
): void {
  consumer.on(consumer.events.REBALANCING, () => {
    health.rebalancing = true;
    log('group.rebalancing');
  });
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    log('consumer.crash', { message: payload.error.message, restart: payload.restart });
    if (!payload.restart) health.crashed = payload.error.message;
  });
  consumer.on(consumer.events.FETCH_START, () => {
    if (health.lag === 0) health.lastProgress = Date.now();
  });
  consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
    health.joined = true;
    health.rebalancing = false;
    onJoin(payload.memberAssignment);
  });
}
