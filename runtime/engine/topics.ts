/**
 * Creates the topics a processor needs (its inputs and outputs as declared, the dead-letter and late-record
 * topics, its compacted changelog) with their declared replication, `min.insync.replicas`, retention and cleanup
 * policy, and checks that existing ones have the declared partition counts and replication factors.
 */
import type { KafkaAdmin } from '../../runtime/kafka/port.ts';
import { AgentStreamsError, ErrorCode } from '../errors.ts';
import { retry, withRetry } from '../retry.ts';
import { processorSpec, type RuntimeTopicSpec, type Topology, type TopicSpec } from '../topology/topology.ts';

/** Dead letters and late records are evidence someone reads days later: keep them a month unless told. */
export const defaultRuntimeTopicRetentionMs = 30 * 24 * 60 * 60 * 1000;

/** A topic as it should be created and checked. */
export interface TopicPlan {
  partitions: number;
  /** Undefined: the broker's default.replication.factor. */
  replicationFactor?: number;
  configEntries: Array<{ name: string; value: string }>;
  /**
   * Whether an existing topic must have exactly `partitions`. Declared topics and changelogs must (keys map to
   * partitions); the dead-letter and late topics need not, so that one made with fewer partitions keeps working.
   */
  strictPartitions: boolean;
  /** `min.insync.replicas` we asked for, checked against the replication factor the topic really has. */
  minInsyncReplicas?: number;
}

/** The `min.insync.replicas` for a known replication factor: survive one broker down, never demand every copy. */
export function defaultMinInsyncReplicas(replicationFactor: number): number {
  return replicationFactor >= 3 ? 2 : 1;
}

function plan(t: TopicSpec, defaultReplicationFactor: number | undefined, strictPartitions: boolean): TopicPlan {
  const replicationFactor = t.replicationFactor ?? defaultReplicationFactor;
  const minInsyncReplicas =
    t.minInsyncReplicas ?? (replicationFactor === undefined ? undefined : defaultMinInsyncReplicas(replicationFactor));
  const cleanupPolicy = t.cleanupPolicy ?? (t.compact ? 'compact' : undefined);
  const configEntries: TopicPlan['configEntries'] = [];
  if (cleanupPolicy !== undefined) configEntries.push({ name: 'cleanup.policy', value: cleanupPolicy });
  if (t.retentionMs !== undefined) configEntries.push({ name: 'retention.ms', value: String(t.retentionMs) });
  if (minInsyncReplicas !== undefined)
    configEntries.push({ name: 'min.insync.replicas', value: String(minInsyncReplicas) });
  return {
    partitions: t.partitions,
    configEntries,
    strictPartitions,
    ...(replicationFactor === undefined ? {} : { replicationFactor }),
    ...(minInsyncReplicas === undefined ? {} : { minInsyncReplicas }),
  };
}

function runtimeTopic(spec: RuntimeTopicSpec | undefined, partitions: number): TopicSpec {
  return { partitions, retentionMs: defaultRuntimeTopicRetentionMs, ...spec };
}

/** Every topic `processor` needs, by name, as `ensureTopics` creates it. */
export function topicPlans(topology: Topology, processor: string): Map<string, TopicPlan> {
  const spec = processorSpec(topology, processor);
  const rf = topology.replicationFactor;
  const inputPartitions = topology.topics[spec.inputs[0]!]?.partitions ?? 1;
  // Dead letters come from every processor's inputs: as many partitions as the widest of them, so that a flood of
  // bad records spreads like the input did.
  const widestInput = Math.max(
    1,
    ...Object.values(topology.processors).flatMap((p) =>
      p.inputs.map((input) => topology.topics[input]?.partitions ?? 1),
    ),
  );
  const plans = new Map<string, TopicPlan>();
  for (const [topic, t] of Object.entries(topology.topics)) plans.set(topic, plan(t, rf, true));
  plans.set(topology.deadLetterTopic, plan(runtimeTopic(topology.deadLetters, widestInput), rf, false));
  plans.set(topology.lateTopic, plan(runtimeTopic(topology.lateRecords, widestInput), rf, false));
  if (topology.storesOf(processor).length > 0)
    plans.set(topology.changelogTopic(processor), plan({ partitions: inputPartitions, compact: true }, rf, true));
  return plans;
}

/** Returns the input partition count. */
export async function ensureTopics(admin: KafkaAdmin, topology: Topology, processor: string): Promise<number> {
  const spec = processorSpec(topology, processor);
  const inputPartitions = topology.topics[spec.inputs[0]!]?.partitions ?? 1;
  const wanted = topicPlans(topology, processor);

  const existing = new Set(await admin.listTopics());
  const missing = [...wanted].filter(([topic]) => !existing.has(topic));
  if (missing.length > 0) {
    // Not kafkajs' waitForLeaders: on a fresh KRaft broker its wait can fail with UNKNOWN_TOPIC_OR_PARTITION from
    // a timer, outside any promise we hold. We wait for the metadata ourselves below.
    await admin
      .createTopics({
        waitForLeaders: false,
        topics: missing.map(([topic, t]) => ({
          topic,
          numPartitions: t.partitions,
          ...(t.replicationFactor === undefined ? {} : { replicationFactor: t.replicationFactor }),
          configEntries: t.configEntries,
        })),
      })
      .catch((error: Error & { type?: string }) => {
        const types = errorTypes(error);
        if (types.size > 0 && [...types].every((type) => type === 'TOPIC_ALREADY_EXISTS')) return;
        if (types.has('INVALID_REPLICATION_FACTOR')) {
          throw new AgentStreamsError(
            ErrorCode.TOPOLOGY_INVALID,
            `Cannot create the topics of "${topology.application}" with the replication factors it declares ` +
              `(${missing.map(([topic, t]) => `${topic}: ${t.replicationFactor ?? 'broker default'}`).join(', ')}): the cluster has fewer brokers. ` +
              `Lower replicationFactor in the topology or add brokers.`,
            { cause: error },
          );
        }
        throw error;
      });
  }
  const metadata = await topicMetadataWithLeaders(admin, [...wanted.keys()]);
  const problems: string[] = [];
  for (const t of metadata.topics) {
    const want = wanted.get(t.name)!;
    if (want.strictPartitions && t.partitions.length !== want.partitions)
      problems.push(`${t.name} has ${t.partitions.length} partitions, the topology declares ${want.partitions}`);
    // Metadata carries the replica list, so the replication factor costs no extra request.
    const replicas = Math.max(...t.partitions.map((p) => p.replicas.length));
    if (want.replicationFactor !== undefined && replicas !== want.replicationFactor) {
      problems.push(
        `${t.name} has replication factor ${replicas}, the topology declares ${want.replicationFactor} (reassign its partitions with kafka-reassign-partitions, or fix the declaration)`,
      );
    }
    if (want.minInsyncReplicas !== undefined && want.minInsyncReplicas > replicas) {
      problems.push(
        `${t.name} wants min.insync.replicas ${want.minInsyncReplicas} but has only ${replicas} replicas, so no acks=all write could succeed`,
      );
    }
  }
  if (problems.length > 0) {
    throw new AgentStreamsError(
      ErrorCode.TOPOLOGY_INVALID,
      `Topics do not match topology "${topology.application}": ${problems.join('; ')}. Repartition or fix the declaration.`,
    );
  }
  return inputPartitions;
}

/** The Kafka error types in an error from kafkajs, which wraps per-topic errors in aggregates and causes. */
function errorTypes(error: unknown, into = new Set<string>(), depth = 0): Set<string> {
  if (typeof error !== 'object' || error === null || depth > 5) return into;
  const e = error as { type?: unknown; errors?: unknown; cause?: unknown; originalError?: unknown };
  if (typeof e.type === 'string') into.add(e.type);
  if (Array.isArray(e.errors)) for (const inner of e.errors) errorTypes(inner, into, depth + 1);
  errorTypes(e.cause, into, depth + 1);
  errorTypes(e.originalError, into, depth + 1);
  return into;
}

/**
 * Topic metadata once every partition has a leader: right after a topic is created (by us or by another member
 * starting at the same time) the broker may not know it yet.
 */
export async function topicMetadataWithLeaders(
  admin: KafkaAdmin,
  topics: string[],
): ReturnType<KafkaAdmin['fetchTopicMetadata']> {
  return withRetry(
    async () => {
      const m = await admin.fetchTopicMetadata({ topics });
      const leaderless = m.topics
        .filter((t) => t.partitions.length === 0 || t.partitions.some((p) => p.leader < 0))
        .map((t) => t.name);
      if (leaderless.length > 0)
        throw new AgentStreamsError(ErrorCode.TOPOLOGY_INVALID, `Topics ${leaderless.join(', ')} have no leader yet.`, {
          retriable: true,
        });
      return m;
    },
    retry({ initialMs: 200, maxMs: 2_000, maxAttempts: 30 }),
    { isRetriable: (error) => (error as { retriable?: boolean }).retriable === true },
  );
}
