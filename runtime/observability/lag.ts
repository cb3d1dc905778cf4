/**
 * Consumer lag as the broker sees it: for every partition of a group's input topics, the partition's end offset
 * minus the group's committed offset, read on a timer. Lag measured after each batch (`batch.offsetLag()`) stops
 * changing exactly when a member stalls, because no batch completes; read from the broker, it keeps rising while
 * input arrives, which is what KEDA scales on and what the lag alert needs.
 *
 * Every member of a group reports the whole group (not only its own partitions), so a partition's lag is still
 * reported while its owner is frozen or between owners. Series from several members are the same numbers: aggregate
 * them with `max by (processor, topic, partition)`.
 *
 * A partition with no committed offset counts from its low watermark (everything retained is waiting). End offsets
 * include transaction markers, so an idle partition written transactionally shows a lag of 1 (as Kafka's own tools do).
 */
import type { KafkaAdmin } from '../../runtime/kafka/port.ts';
import type { Metrics } from './metrics.ts';

export interface LagMonitorOptions {
  admin: Pick<KafkaAdmin, 'fetchTopicOffsets' | 'fetchOffsets'>;
  groupId: string;
  topics: readonly string[];
  /** The `processor` label. */
  processor: string;
  metrics: Pick<Metrics, 'consumerLag' | 'consumerLagSampled'>;
  intervalMs: number;
  log?: (event: string, fields?: Record<string, unknown>) => void;
}

export interface PartitionLag {
  topic: string;
  partition: number;
  lag: number;
}

export interface LagMonitor {
  /** Reads the lag now (the timer does this every `intervalMs`). */
  sample(): Promise<PartitionLag[]>;
  /** Stops the timer. Idempotent. */
  stop(): void;
}

export async function readGroupLag(
  admin: LagMonitorOptions['admin'],
  groupId: string,
  topics: readonly string[],
): Promise<PartitionLag[]> {
  const committed = new Map<string, number>();
  for (const { topic, partitions } of await admin.fetchOffsets({ groupId, topics: [...topics] })) {
    for (const { partition, offset } of partitions) committed.set(`${topic}:${partition}`, Number(offset));
  }
  const lags: PartitionLag[] = [];
  for (const topic of topics) {
    for (const { partition, high, low } of await admin.fetchTopicOffsets(topic)) {
      const position = committed.get(`${topic}:${partition}`) ?? -1;
      const from = position >= 0 ? position : Number(low);
      lags.push({ topic, partition, lag: Math.max(0, Number(high) - from) });
    }
  }
  return lags;
}

export function startLagMonitor(options: LagMonitorOptions): LagMonitor {
  const { admin, groupId, topics, processor, metrics, log } = options;
  let failing = false;
  let running: Promise<PartitionLag[]> | undefined;
  const sample = (): Promise<PartitionLag[]> => {
    // One read at a time: a slow broker must not pile up requests.
    running ??= (async () => {
      try {
        const lags = await readGroupLag(admin, groupId, topics);
        for (const { topic, partition, lag } of lags)
          metrics.consumerLag.set({ processor, topic, partition: String(partition) }, lag);
        metrics.consumerLagSampled.set({ processor }, Date.now() / 1000);
        if (failing) log?.('lag.recovered');
        failing = false;
        return lags;
      } catch (error) {
        // The last values stay; agent_streams_consumer_lag_sampled_timestamp_seconds says how old they are.
        if (!failing) log?.('lag.read-failed', { message: (error as Error).message });
        failing = true;
        throw error;
      } finally {
        running = undefined;
      }
    })();
    return running;
  };
  const timer = setInterval(() => void sample().catch(() => undefined), options.intervalMs);
  timer.unref();
  void sample().catch(() => undefined);
  return { sample, stop: () => clearInterval(timer) };
}
