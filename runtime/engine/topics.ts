/**
 * Creates the topics a processor needs (its inputs and outputs as declared, the dead-letter and late-record
 * topics, its compacted changelog) and checks that existing ones have the declared partition counts.
 */
import type { Admin } from 'kafkajs';
import { AgentStreamsError, ErrorCode } from '../errors.ts';
import { retry, withRetry } from '../retry.ts';
import { processorSpec, type Topology } from '../topology/topology.ts';

/** Returns the input partition count. */
export async function ensureTopics(admin: Admin, topology: Topology, processor: string): Promise<number> {
  const spec = processorSpec(topology, processor);
  const inputPartitions = topology.topics[spec.inputs[0]!]?.partitions ?? 1;
  const wanted = new Map<string, { partitions: number; compact: boolean }>();
  for (const [topic, t] of Object.entries(topology.topics)) wanted.set(topic, { partitions: t.partitions, compact: t.compact ?? false });
  wanted.set(topology.deadLetterTopic, { partitions: 1, compact: false });
  wanted.set(topology.lateTopic, { partitions: 1, compact: false });
  if (topology.storesOf(processor).length > 0) wanted.set(topology.changelogTopic(processor), { partitions: inputPartitions, compact: true });

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
          configEntries: t.compact ? [{ name: 'cleanup.policy', value: 'compact' }] : [],
        })),
      })
      .catch((error: Error & { type?: string }) => {
        if (error.type !== 'TOPIC_ALREADY_EXISTS') throw error;
      });
  }
  const metadata = await topicMetadataWithLeaders(admin, [...wanted.keys()]);
  const problems: string[] = [];
  for (const t of metadata.topics) {
    const want = wanted.get(t.name)!;
    if (t.partitions.length !== want.partitions) problems.push(`${t.name} has ${t.partitions.length} partitions, the topology declares ${want.partitions}`);
  }
  if (problems.length > 0) {
    throw new AgentStreamsError(ErrorCode.TOPOLOGY_INVALID, `Topics do not match topology "${topology.application}": ${problems.join('; ')}. Repartition or fix the declaration.`);
  }
  return inputPartitions;
}

/**
 * Topic metadata once every partition has a leader: right after a topic is created (by us or by another member
 * starting at the same time) the broker may not know it yet.
 */
export async function topicMetadataWithLeaders(admin: Admin, topics: string[]): ReturnType<Admin['fetchTopicMetadata']> {
  return withRetry(
    async () => {
      const m = await admin.fetchTopicMetadata({ topics });
      const leaderless = m.topics.filter((t) => t.partitions.length === 0 || t.partitions.some((p) => p.leader < 0)).map((t) => t.name);
      if (leaderless.length > 0) throw new AgentStreamsError(ErrorCode.TOPOLOGY_INVALID, `Topics ${leaderless.join(', ')} have no leader yet.`, { retriable: true });
      return m;
    },
    retry({ initialMs: 200, maxMs: 2_000, maxAttempts: 30 }),
    { isRetriable: (error) => (error as { retriable?: boolean }).retriable === true },
  );
}
