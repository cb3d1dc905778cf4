/** The port's admin on @platformatic/kafka, returning kafkajs-shaped results. */
import { Admin, FetchIsolationLevels } from '@platformatic/kafka';
import { AssignerProtocol, type ConsumerGroupState, type ITopicConfig } from 'kafkajs';
import type { KafkaAdmin } from '../port.ts';
import {
  baseOptions,
  logClientEvents,
  protocolErrorOf,
  translated,
  unsupported,
  type ClientContext,
} from './common.ts';

const states: Record<string, ConsumerGroupState> = {
  PREPARING_REBALANCE: 'PreparingRebalance',
  COMPLETING_REBALANCE: 'CompletingRebalance',
  STABLE: 'Stable',
  DEAD: 'Dead',
  EMPTY: 'Empty',
};
const groupState = (state: string | undefined): ConsumerGroupState =>
  state === undefined ? 'Dead' : (states[state] ?? 'Unknown');

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export function platformaticAdmin(context: ClientContext): KafkaAdmin {
  const admin = new Admin(baseOptions(context, undefined));
  logClientEvents(admin, admin.clientId, context.options.logLevel === 0);

  const metadataOf = (topics: string[]) => admin.metadata({ topics, forceUpdate: true });

  const partitionsOf = async (topic: string): Promise<number[]> => {
    const metadata = await metadataOf([topic]);
    return metadata.topics.get(topic)!.partitions.map((_, i) => i);
  };

  const listOffsets = async (topic: string, timestamp: bigint): Promise<Map<number, bigint>> => {
    const partitions = await partitionsOf(topic);
    const [listed] = await admin.listOffsets({
      topics: [{ name: topic, partitions: partitions.map((partitionIndex) => ({ partitionIndex, timestamp })) }],
      isolationLevel: FetchIsolationLevels.READ_UNCOMMITTED,
    });
    return new Map((listed?.partitions ?? []).map((p) => [p.partitionIndex, p.offset]));
  };

  const waitForLeaders = async (topics: string[], timeoutMs: number): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const metadata = await metadataOf(topics);
        if (topics.every((t) => metadata.topics.get(t)?.partitions.every((p) => p.leader >= 0))) return;
      } catch (error) {
        if (Date.now() > deadline) throw error;
      }
      if (Date.now() > deadline) throw new Error(`Timed out waiting for leaders of ${topics.join(', ')}`);
      await sleep(100);
    }
  };

  const result: KafkaAdmin = {
    connect: () => translated(async () => void (await admin.metadata({ topics: [] }))),
    disconnect: () => translated(() => admin.close()),
    listTopics: () => translated(() => admin.listTopics()),
    createTopics: ({ topics, waitForLeaders: wait = true, timeout = 5000, validateOnly }) =>
      translated(async () => {
        if (validateOnly)
          throw unsupported('createTopics({ validateOnly })', 'platformatic has no validate-only creation');
        let created = true;
        for (const topic of topics as ITopicConfig[]) {
          if (topic.replicaAssignment && topic.replicaAssignment.length > 0)
            throw unsupported('createTopics replicaAssignment', 'the adapter does not map it');
          try {
            await admin.createTopics({
              topics: [topic.topic],
              partitions: topic.numPartitions ?? -1,
              replicas: topic.replicationFactor ?? -1,
              configs: (topic.configEntries ?? []).map(({ name, value }) => ({ name, value })),
            });
          } catch (error) {
            if (protocolErrorOf(error)?.apiId !== 'TOPIC_ALREADY_EXISTS') throw error;
            created = false;
          }
        }
        if (wait)
          await waitForLeaders(
            (topics as ITopicConfig[]).map((t) => t.topic),
            Math.max(timeout, 5000),
          );
        return created;
      }),
    deleteTopics: ({ topics }) => translated(() => admin.deleteTopics({ topics })),
    fetchTopicMetadata: (options) =>
      translated(async () => {
        const names = options?.topics ?? (await admin.listTopics());
        const metadata = await metadataOf(names);
        return {
          topics: names.map((name) => ({
            name,
            partitions: metadata.topics.get(name)!.partitions.map((p, partitionId) => ({
              partitionErrorCode: 0,
              partitionId,
              leader: p.leader,
              replicas: p.replicas,
              isr: p.isr,
              offlineReplicas: p.offlineReplicas,
            })),
          })),
        };
      }),
    fetchTopicOffsets: (topic) =>
      translated(async () => {
        const [high, low] = await Promise.all([listOffsets(topic, -1n), listOffsets(topic, -2n)]);
        return [...high.entries()]
          .sort(([a], [b]) => a - b)
          .map(([partition, offset]) => ({
            partition,
            offset: String(offset),
            high: String(offset),
            low: String(low.get(partition) ?? 0n),
          }));
      }),
    fetchOffsets: (({ groupId, topics }: { groupId: string; topics?: string[] }) =>
      translated(async () => {
        const wanted = topics
          ? await Promise.all(topics.map(async (name) => ({ name, partitionIndexes: await partitionsOf(name) })))
          : null;
        const [group] = await admin.listConsumerGroupOffsets({ groups: [{ groupId, topics: wanted }] });
        const found = new Map((group?.topics ?? []).map((t) => [t.name, t.partitions]));
        const names = wanted ? wanted.map((t) => t.name) : [...found.keys()];
        return names.map((topic) => {
          const committed = new Map((found.get(topic) ?? []).map((p) => [p.partitionIndex, p]));
          const partitions = wanted ? wanted.find((t) => t.name === topic)!.partitionIndexes : [...committed.keys()];
          return {
            topic,
            partitions: partitions.map((partition) => ({
              partition,
              offset: String(committed.get(partition)?.committedOffset ?? -1n),
              metadata: committed.get(partition)?.metadata ?? null,
            })),
          };
        });
      })) as KafkaAdmin['fetchOffsets'],
    listGroups: () =>
      translated(async () => ({
        groups: [...(await admin.listGroups()).values()].map((g) => ({ groupId: g.id, protocolType: g.protocolType })),
      })),
    describeGroups: (groupIds) =>
      translated(async () => {
        const groups = await admin.describeGroups({ groups: groupIds });
        return {
          groups: groupIds.map((groupId) => {
            const g = groups.get(groupId);
            return {
              groupId,
              errorCode: 0,
              state: groupState(g?.state),
              protocol: g?.protocol ?? '',
              protocolType: g?.protocolType ?? '',
              members: [...(g?.members.values() ?? [])].map((m) => ({
                memberId: m.id,
                clientId: m.clientId,
                clientHost: m.clientHost,
                memberMetadata: Buffer.alloc(0),
                memberAssignment: m.assignments
                  ? AssignerProtocol.MemberAssignment.encode({
                      version: 0,
                      assignment: Object.fromEntries([...m.assignments.values()].map((a) => [a.topic, a.partitions])),
                      userData: Buffer.alloc(0),
                    })
                  : Buffer.alloc(0),
              })),
            };
          }),
        };
      }),
    deleteGroups: ((groupIds: string[]) =>
      translated(async () => {
        await admin.deleteGroups({ groups: groupIds });
        return groupIds.map((groupId) => ({ groupId, errorCode: 0 }));
      })) as KafkaAdmin['deleteGroups'],
    describeCluster: () =>
      translated(async () => {
        const metadata = await admin.metadata({ topics: [] });
        return {
          clusterId: metadata.id,
          controller: metadata.controllerId,
          brokers: [...metadata.brokers.entries()].map(([nodeId, b]) => ({ nodeId, host: b.host, port: b.port })),
        };
      }),
  };
  return result;
}
