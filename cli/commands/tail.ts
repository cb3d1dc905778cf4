/**
 * `agent-streams tail <topic>`: a topic's records decoded through the schema registry, like kcat -C. Without
 * --follow it stops by itself: it reads up to the end offsets it saw when it started. By default it shows the last
 * --max records (10); --from-beginning starts at the earliest offset; --follow starts at the end (or, with
 * --from-beginning, the earliest offset) and keeps printing until Ctrl-C or --max records. It joins no application's group: a throw-away group that commits nothing and is
 * deleted after.
 */
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import type { KafkaMessage } from 'kafkajs';
import { loadConfig } from '../../runtime/config/index.ts';
import { AgentStreamsError, ErrorCode } from '../../runtime/errors.ts';
import { AvroSerde, registryClient } from '../../runtime/serde/avro.ts';
import { expectPositionals, wholeNumber } from '../args.ts';
import { checkFormat, dataFormats, formatOption, truncate } from '../format.ts';
import { cliKafka } from '../kafka.ts';
import type { Command } from '../main.ts';

export interface TailRecord {
  topic: string;
  partition: number;
  offset: string;
  timestamp: string;
  key: string | null;
  type?: string;
  schemaId?: number;
  value?: unknown;
  /** Why the value could not be decoded (the record is shown all the same). */
  error?: string;
}

const DEFAULT_LAST = 10;
const IDLE_STOP_MS = 15_000;

const options = {
  follow: { type: 'boolean', short: 'f', default: false },
  'from-beginning': { type: 'boolean', default: false },
  max: { type: 'string' },
  format: formatOption,
} as const;

const json = (value: unknown): string =>
  JSON.stringify(value, (_k, v: unknown) =>
    typeof v === 'bigint' ? v.toString() : Buffer.isBuffer(v) ? v.toString('base64') : v,
  );

function tableLine(r: TailRecord): string {
  const value = r.error !== undefined ? `<undecodable: ${r.error}>` : json(r.value);
  return [
    String(r.partition).padStart(3),
    r.offset.padStart(8),
    r.timestamp.padEnd(24),
    truncate(r.key ?? '', 16).padEnd(16),
    truncate(r.type ? r.type.slice(r.type.lastIndexOf('.') + 1) : '-', 20).padEnd(20),
    truncate(value, 100),
  ].join('  ');
}

const TABLE_HEADER = ['  p', '  offset', 'timestamp'.padEnd(24), 'key'.padEnd(16), 'type'.padEnd(20), 'value'].join(
  '  ',
);

export const tailCommand: Command = {
  summary:
    'Print the records of a topic decoded through the schema registry (last 10; --from-beginning, --follow, --max N)',
  usage: 'tail <topic> [--from-beginning] [--follow|-f] [--max N] [--format table|json]',
  options,
  async run(args) {
    const { positionals, values } = parseArgs({ args, allowPositionals: true, options });
    const [topic] = expectPositionals('tail', positionals, ['topic']) as [string];
    const format = checkFormat(values.format, dataFormats);
    const max = values.max === undefined ? undefined : wholeNumber('max', values.max, 1);
    const follow = values.follow;
    const fromBeginning = values['from-beginning'];
    // Without --from-beginning or --follow, tail shows the last records, as tail(1) does (--max of them); --follow
    // alone starts at the end and prints what arrives, --max stopping it after that many.
    const last = !fromBeginning && !follow ? (max ?? DEFAULT_LAST) : undefined;
    if (follow && fromBeginning && max === undefined && process.stdout.isTTY)
      console.error('tail: following from the beginning; Ctrl-C stops');

    const config = loadConfig();
    const kafka = cliKafka(config, 'tail');
    const serde = new AvroSerde(registryClient(config));
    const admin = kafka.admin();
    await admin.connect();
    let ranges: Array<{ partition: number; start: number; end: number }>;
    const groupId = `agent-streams-tail-${randomUUID()}`;
    try {
      if (!(await admin.listTopics()).includes(topic)) {
        throw new AgentStreamsError(
          ErrorCode.TOPIC_NOT_FOUND,
          `topic ${topic} does not exist on ${config.kafka.brokers.join(',')}; check its name (\`agent-streams topology describe FILE\` lists an application's topics)`,
        );
      }
      const offsets = await admin.fetchTopicOffsets(topic);
      ranges = offsets.map((o) => {
        const low = Number(o.low);
        const end = Number(o.high);
        // Last N per partition is enough to find the last N of the topic (sorted by time below).
        const start = fromBeginning ? low : last !== undefined ? Math.max(low, end - last) : end;
        return { partition: o.partition, start, end };
      });
    } finally {
      await admin.disconnect();
    }
    const start = new Map(ranges.map((r) => [r.partition, r.start]));
    const end = new Map(ranges.map((r) => [r.partition, r.end]));
    // Partitions still to read up to their end offset (without --follow); empty ones are done already.
    const pending = new Set(ranges.filter((r) => r.end > r.start).map((r) => r.partition));
    const collectLast = !follow && !fromBeginning;
    const collected: TailRecord[] = [];
    let printed = 0;
    let headerShown = false;
    const emit = (r: TailRecord): void => {
      if (format === 'json') {
        process.stdout.write(`${json(r)}\n`);
      } else {
        if (!headerShown) process.stdout.write(`${TABLE_HEADER}\n`);
        headerShown = true;
        process.stdout.write(`${tableLine(r)}\n`);
      }
      printed += 1;
    };
    const decode = async (partition: number, message: KafkaMessage): Promise<TailRecord> => {
      const base = {
        topic,
        partition,
        offset: message.offset,
        timestamp: new Date(Number(message.timestamp)).toISOString(),
        key: message.key?.toString('utf8') ?? null,
      };
      try {
        // A registry that cannot be reached fails the command (one line); a record it cannot decode is shown as such.
        await serde.resolve([message.value]);
        const decoded = await serde.decode(message.value);
        return { ...base, type: decoded.recordType, schemaId: decoded.schemaId, value: decoded.value };
      } catch (error) {
        if (error instanceof AgentStreamsError && error.code === ErrorCode.REGISTRY_UNAVAILABLE) throw error;
        return { ...base, error: (error as Error).message };
      }
    };

    if (!follow && pending.size === 0) {
      if (format === 'table') console.error(`tail: ${topic} has no records${fromBeginning ? '' : ' to show'}`);
      return 0;
    }

    const consumer = kafka.consumer({ groupId, readUncommitted: false, maxWaitTimeInMs: 250, retry: { retries: 3 } });
    await consumer.connect();
    try {
      await consumer.subscribe({ topic, fromBeginning: true });
      await new Promise<void>((resolve, reject) => {
        let finished = false;
        const finish = (error?: unknown): void => {
          if (finished) return;
          finished = true;
          clearTimeout(idle);
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          if (error) reject(error);
          else resolve();
        };
        const stop = (): void => finish();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        // Without --follow, a safety net: a partition whose last offsets were compacted away may never report the
        // end offset; after IDLE_STOP_MS with nothing fetched, stop and say so.
        let idle: NodeJS.Timeout | undefined;
        const rearm = (): void => {
          if (follow || finished) return;
          clearTimeout(idle);
          idle = setTimeout(() => {
            console.error(
              `tail: nothing more arrived for ${IDLE_STOP_MS / 1000} s; stopping before the end offsets of partitions ${[...pending].join(', ')}`,
            );
            finish();
          }, IDLE_STOP_MS);
        };
        consumer.on(consumer.events.GROUP_JOIN, rearm);
        consumer.on(consumer.events.FETCH, (e) => {
          if (e.payload.numberOfBatches > 0) rearm();
        });
        const reached = (partition: number, lastOffset: number): void => {
          if (lastOffset >= (end.get(partition) ?? 0) - 1) pending.delete(partition);
          if (!follow && pending.size === 0) finish();
        };
        // Batches of transaction markers alone reach no handler; this event reports how far they got.
        consumer.on(consumer.events.END_BATCH_PROCESS, (e) => {
          if (e.payload.topic === topic && e.payload.lastOffset !== null)
            reached(e.payload.partition, Number(e.payload.lastOffset));
        });
        consumer.on(consumer.events.CRASH, (e) => finish(e.payload.error));
        consumer
          .run({
            autoCommit: false,
            eachBatchAutoResolve: true,
            eachBatch: async ({ batch }) => {
              for (const message of batch.messages) {
                if (finished) return;
                const offset = Number(message.offset);
                if (offset < (start.get(batch.partition) ?? 0)) continue;
                // Past the end seen at start: only --follow prints it.
                if (!follow && offset >= (end.get(batch.partition) ?? 0)) continue;
                let record: TailRecord;
                try {
                  record = await decode(batch.partition, message);
                } catch (error) {
                  // The registry is unreachable: end here with that error (thrown, kafkajs would retry the batch).
                  return finish(error);
                }
                if (collectLast) collected.push(record);
                else emit(record);
                if (max !== undefined && !collectLast && printed >= max) return finish();
              }
              if (!finished) reached(batch.partition, Number(batch.lastOffset()));
            },
          })
          .then(() => {
            for (const r of ranges)
              if (r.start > 0 || fromBeginning)
                consumer.seek({ topic, partition: r.partition, offset: String(r.start) });
          })
          .catch(finish);
      });
    } finally {
      await consumer.disconnect().catch(() => undefined);
      const cleanup = kafka.admin();
      await cleanup
        .connect()
        .then(() => cleanup.deleteGroups([groupId]))
        .catch(() => undefined)
        .finally(() => cleanup.disconnect().catch(() => undefined));
    }
    if (collectLast) {
      collected.sort(
        (a, b) =>
          a.timestamp.localeCompare(b.timestamp) || a.partition - b.partition || Number(a.offset) - Number(b.offset),
      );
      for (const r of collected.slice(-(last ?? DEFAULT_LAST))) emit(r);
    }
    if (printed === 0 && format === 'table') console.error(`tail: no records in ${topic}`);
    return 0;
  },
};
