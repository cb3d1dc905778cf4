/**
 * The port's admin on @confluentinc/kafka-javascript's KafkaJS-compatible admin, with kafkajs' result shapes:
 * - `createTopics({ waitForLeaders: true })` waits (within `timeout`, default 5 s) until every partition of the new
 *   topics has a leader, as kafkajs does; the library refuses the option.
 * - `fetchTopicOffsets` reads read_committed end offsets (kafkajs' ListOffsets default).
 * - `fetchOffsets({ groupId, topics: [names] })` lists every partition of the topics, `-1` where the group has
 *   committed nothing (librdkafka lists only committed partitions, with -1001 for none). It asks for stable
 *   offsets: the broker holds back an answer while a transaction holding offsets of the group is being completed.
 * - `describeCluster` reads the brokers from a metadata request of a low-level client.
 */
import type { KafkaAdmin } from '../port.ts';
import {
  baseConfig,
  confluentLibrary,
  kafkajsError,
  lowLevelConfig,
  translated,
  unsupported,
  type ClientContext,
  type RdError,
  type RdMetadata,
} from './common.ts';

const UNSTABLE_OFFSET_COMMIT = 88;

type Fn = (...args: never[]) => Promise<unknown>;
type LibAdmin = Record<
  | 'connect'
  | 'disconnect'
  | 'listTopics'
  | 'createTopics'
  | 'fetchTopicMetadata'
  | 'fetchTopicOffsets'
  | 'fetchOffsets'
  | 'listGroups'
  | 'describeGroups'
  | 'deleteGroups'
  | 'deleteTopics',
  Fn
>;

interface TopicMetadata {
  name: string;
  partitions: Array<{ partitionId: number; leader: number }>;
}

export function confluentAdmin(context: ClientContext): KafkaAdmin {
  const { kafkaJS, rd } = baseConfig(context, undefined);
  const { Kafka } = confluentLibrary().KafkaJS;
  const admin = new Kafka({}).admin({ kafkaJS, ...rd }) as unknown as LibAdmin;
  const call = <T>(fn: () => Promise<unknown>): Promise<T> => translated(fn) as Promise<T>;
  const metadata = (topics: string[]): Promise<TopicMetadata[]> =>
    call(() => (admin.fetchTopicMetadata as (o: object) => Promise<unknown>)({ topics }));

  const self = {
    connect: () => call<void>(() => admin.connect()),
    disconnect: () => call<void>(() => admin.disconnect()),
    listTopics: () => call<string[]>(() => admin.listTopics()),
    createTopics: async (options: {
      topics: Array<{ topic: string }>;
      waitForLeaders?: boolean;
      validateOnly?: boolean;
      timeout?: number;
    }): Promise<boolean> => {
      const { waitForLeaders = true, validateOnly, timeout = 5_000, topics } = options;
      if (validateOnly) throw unsupported('createTopics with validateOnly', 'the library does not implement it');
      const created = await call<boolean>(() =>
        (admin.createTopics as (o: object) => Promise<unknown>)({ topics, timeout }),
      );
      if (waitForLeaders) {
        const names = topics.map((t) => t.topic);
        const deadline = Date.now() + timeout;
        for (;;) {
          const found = await metadata(names).catch(() => []);
          const led =
            found.length === names.length &&
            found.every((t) => t.partitions.length > 0 && t.partitions.every((p) => p.leader >= 0));
          if (led) break;
          if (Date.now() > deadline) {
            const error = new Error(`no leader for every partition of ${names.join(', ')} after ${timeout} ms`);
            error.name = 'KafkaJSRequestTimeoutError';
            throw error;
          }
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      return created;
    },
    fetchTopicMetadata: (options?: { topics: string[] }) =>
      call<{ topics: TopicMetadata[] }>(async () => ({
        topics: await (admin.fetchTopicMetadata as (o?: object) => Promise<TopicMetadata[]>)(options),
      })),
    fetchTopicOffsets: (topic: string) =>
      call(() =>
        (admin.fetchTopicOffsets as (t: string, o: object) => Promise<unknown>)(topic, {
          isolationLevel: 1, // READ_COMMITTED
        }),
      ),
    fetchOffsets: async (options: {
      groupId: string;
      topics?: string[] | Array<{ topic: string; partitions: number[] }>;
      resolveOffsets?: boolean;
    }) => {
      if (options.resolveOffsets) throw unsupported('fetchOffsets with resolveOffsets', 'not implemented');
      let topics = options.topics;
      if (topics && topics.length > 0 && typeof topics[0] === 'string') {
        const found = await metadata(topics as string[]);
        topics = found.map((t) => ({ topic: t.name, partitions: t.partitions.map((p) => p.partitionId) }));
      }
      type Fetched = Array<{
        topic: string;
        partitions: Array<{ partition: number; offset: string; metadata: string | null; error: RdError | null }>;
      }>;
      const fetch = (): Promise<Fetched> =>
        call<Fetched>(() =>
          (admin.fetchOffsets as (o: object) => Promise<unknown>)({
            groupId: options.groupId,
            ...(topics ? { topics } : {}),
            requireStableOffsets: true,
          }),
        );
      // A partition whose offsets a transaction is completing answers UNSTABLE_OFFSET_COMMIT: asked again shortly.
      let result = await fetch();
      for (let waited = 0; ; waited += 100) {
        const failed = result.flatMap((t) => t.partitions).find((p) => p.error);
        if (!failed) break;
        if (failed.error!.code !== UNSTABLE_OFFSET_COMMIT || waited >= 30_000) throw kafkajsError(failed.error);
        await new Promise((r) => setTimeout(r, 100));
        result = await fetch();
      }
      return result.map(({ topic, partitions }) => ({
        topic,
        partitions: partitions
          .map(({ partition, offset, metadata }) => ({
            partition,
            offset: Number(offset) < 0 ? '-1' : offset,
            metadata: metadata ?? null,
          }))
          .sort((a, b) => a.partition - b.partition),
      }));
    },
    listGroups: () =>
      call<{ groups: Array<{ groupId: string; protocolType: string }> }>(async () => {
        const listed = (await admin.listGroups()) as { groups: Array<{ groupId: string; protocolType: string }> };
        return { groups: listed.groups.map(({ groupId, protocolType }) => ({ groupId, protocolType })) };
      }),
    describeGroups: (groupIds: string[]) =>
      call(() => (admin.describeGroups as (g: string[]) => Promise<unknown>)(groupIds)),
    deleteGroups: (groupIds: string[]) =>
      call(() => (admin.deleteGroups as (g: string[]) => Promise<unknown>)(groupIds)),
    deleteTopics: (options: { topics: string[]; timeout?: number }) =>
      call<void>(() => (admin.deleteTopics as (o: object) => Promise<unknown>)(options)),
    describeCluster: async () => {
      const { Producer } = confluentLibrary();
      const client = new Producer(lowLevelConfig(context));
      await new Promise<void>((resolve, reject) =>
        client.connect(null, (error) => (error ? reject(kafkajsError(error)) : resolve())),
      );
      try {
        const meta = await new Promise<RdMetadata>((resolve, reject) =>
          client.getMetadata({ allTopics: false, timeout: 5_000 }, (error, m) =>
            error ? reject(kafkajsError(error)) : resolve(m),
          ),
        );
        return {
          brokers: meta.brokers.map(({ id, host, port }) => ({ nodeId: id, host, port })),
          controller: null,
          clusterId: '',
        };
      } finally {
        await new Promise<void>((resolve) => client.disconnect(5_000, () => resolve()));
      }
    },
  };
  return self as unknown as KafkaAdmin;
}
