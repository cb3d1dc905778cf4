/**
 * `agent-streams produce <topic> --type T`: JSON Lines on stdin, one record value per line, encoded as Avro with the
 * registry's latest schema of T (Confluent wire format) and sent in one Kafka transaction. Every line is checked
 * first — JSON, the schema, and the range rules consumers apply on decode — and each bad line is reported with its
 * line number. Nothing is half-sent: with a bad line nothing is sent (exit 1); with --skip-invalid the valid lines
 * are sent, all in one transaction, and the summary says exactly which lines were (exit 3).
 */
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import type { Message, RecordMetadata } from 'kafkajs';
import { loadConfig } from '../../runtime/config/index.ts';
import { AgentStreamsError, ErrorCode } from '../../runtime/errors.ts';
import { AvroSerde, registryClient } from '../../runtime/serde/avro.ts';
import { registryHttp } from '../../runtime/serde/schemas.ts';
import { expectPositionals, usageError } from '../args.ts';
import { cliKafka } from '../kafka.ts';
import type { Command } from '../main.ts';

/** Exit status when valid lines were sent and invalid ones skipped (as `replay`): scripts can tell it from full success. */
export const EXIT_SKIPPED_LINES = 3;

export interface BadLine {
  line: number;
  problem: string;
}

const options = {
  type: { type: 'string', short: 't' },
  key: { type: 'string', short: 'k' },
  'skip-invalid': { type: 'boolean', default: false },
} as const;

const MAX_REQUEST_BYTES = 512 * 1024;
const MAX_REQUEST_MESSAGES = 1000;

/** Messages in request-sized groups, in order. */
export function* chunks<M extends Message>(messages: readonly M[]): Generator<M[]> {
  let chunk: M[] = [];
  let bytes = 0;
  for (const m of messages) {
    const size = (m.value as Buffer).length + (m.key ? Buffer.byteLength(String(m.key)) : 0) + 64;
    if (chunk.length > 0 && (bytes + size > MAX_REQUEST_BYTES || chunk.length >= MAX_REQUEST_MESSAGES)) {
      yield chunk;
      chunk = [];
      bytes = 0;
    }
    chunk.push(m);
    bytes += size;
  }
  if (chunk.length > 0) yield chunk;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** The registry subject of a record type: its full name, or a short name that ends exactly one registered subject. */
async function subjectOf(config: ReturnType<typeof loadConfig>, type: string): Promise<string> {
  const listed = await registryHttp(config, 'GET', '/subjects');
  if (listed.status !== 200 || !Array.isArray(listed.json)) {
    throw new AgentStreamsError(
      ErrorCode.REGISTRY_UNAVAILABLE,
      `the schema registry at ${config.registry.url} answered HTTP ${listed.status} to GET /subjects`,
    );
  }
  const subjects = listed.json as string[];
  if (subjects.includes(type)) return type;
  const matches = subjects.filter((s) => s.endsWith(`.${type}`));
  if (matches.length === 1) return matches[0]!;
  if (matches.length > 1) throw usageError(`--type ${type} matches ${matches.join(', ')}: give the full name`);
  throw new AgentStreamsError(
    ErrorCode.SCHEMA_INVALID,
    `record type ${type} has no schema in the registry at ${config.registry.url}; register it first (\`agent-streams schemas register\`) or use one of: ${subjects.slice(0, 12).join(', ')}${subjects.length > 12 ? ', …' : ''}`,
  );
}

const describeValue = (v: unknown): string => {
  const text = JSON.stringify(v);
  return text === undefined ? 'missing' : text.length > 40 ? `${text.slice(0, 39)}…` : text;
};

export const produceCommand: Command = {
  summary:
    'Send JSON Lines from stdin to a topic as Avro records of --type, in one transaction; bad lines are reported by line number',
  usage: 'produce <topic> --type RECORD_TYPE [--key FIELD] [--skip-invalid]  < records.jsonl',
  options,
  async run(args) {
    const { positionals, values } = parseArgs({ args, allowPositionals: true, options });
    const [topic] = expectPositionals('produce', positionals, ['topic']) as [string];
    if (!values.type)
      throw usageError(
        'produce needs --type RECORD_TYPE (a registered record name, e.g. agentstreams.market.Trade or Trade)',
      );
    if (process.stdin.isTTY) console.error('produce: reading JSON Lines from stdin; Ctrl-D ends');
    const text = await readStdin();
    const lines = text.split('\n');
    if (lines.at(-1) === '') lines.pop();
    if (lines.every((l) => l.trim() === ''))
      throw usageError('produce read no records from stdin: pipe in JSON Lines, one record value per line');

    const config = loadConfig();
    const subject = await subjectOf(config, values.type);
    const serde = new AvroSerde(registryClient(config));
    const writer = await serde.writerFor(subject);

    const bad: BadLine[] = [];
    const messages: Array<Message & { line: number }> = [];
    lines.forEach((raw, i) => {
      const line = i + 1;
      if (raw.trim() === '') return;
      let value: unknown;
      try {
        value = JSON.parse(raw);
      } catch (error) {
        bad.push({ line, problem: `not JSON (${(error as Error).message})` });
        return;
      }
      const problems: string[] = [];
      if (
        !writer.type.isValid(value, {
          errorHook: (path, v) => problems.push(`${path.join('.') || '(value)'} = ${describeValue(v)}`),
        })
      ) {
        bad.push({ line, problem: `does not match ${subject} (schema id ${writer.id}): ${problems.join('; ')}` });
        return;
      }
      let key: string | null = null;
      if (values.key !== undefined) {
        const field = (value as Record<string, unknown>)[values.key];
        if (field === undefined || field === null || typeof field === 'object') {
          bad.push({
            line,
            problem: `--key ${values.key}: the value has no scalar field "${values.key}" (its fields: ${Object.keys(value as object).join(', ')})`,
          });
          return;
        }
        key = String(field);
      }
      messages.push({ line, key, value: serde.encode(subject, value) });
    });
    // The range rules (custom schema attributes) are checked where consumers check them: on decode.
    for (const m of [...messages]) {
      try {
        await serde.decode(m.value as Buffer);
      } catch (error) {
        bad.push({ line: m.line, problem: (error as Error).message });
        messages.splice(messages.indexOf(m), 1);
      }
    }
    bad.sort((a, b) => a.line - b.line);
    for (const b of bad) console.error(`line ${b.line}: ${b.problem}`);
    if (bad.length > 0 && !values['skip-invalid']) {
      throw new AgentStreamsError(
        ErrorCode.RECORD_INVALID,
        `nothing sent to ${topic}: ${bad.length} of ${bad.length + messages.length} records are invalid (lines ${bad.map((b) => b.line).join(', ')}); fix them, or pass --skip-invalid to send the ${messages.length} valid ones`,
      );
    }
    if (messages.length === 0) {
      console.log(`nothing sent to ${topic}: no valid records`);
      return bad.length > 0 ? EXIT_SKIPPED_LINES : 0;
    }

    const kafka = cliKafka(config, 'produce');
    const admin = kafka.admin();
    await admin.connect();
    try {
      if (!(await admin.listTopics()).includes(topic)) {
        throw new AgentStreamsError(
          ErrorCode.TOPIC_NOT_FOUND,
          `topic ${topic} does not exist on ${config.kafka.brokers.join(',')}: nothing sent; produce creates no topics (a topology's members create theirs)`,
        );
      }
    } finally {
      await admin.disconnect();
    }
    const producer = kafka.producer({
      transactionalId: `agent-streams-produce-${randomUUID()}`,
      idempotent: true,
      maxInFlightRequests: 1,
    });
    await producer.connect();
    try {
      const transaction = await producer.transaction();
      const sent: RecordMetadata[] = [];
      try {
        // One transaction, several requests: no request carries more than MAX_REQUEST_BYTES (the broker refuses a
        // batch over its message.max.bytes, 1 MiB by default).
        for (const chunk of chunks(messages))
          sent.push(...(await transaction.send({ topic, messages: chunk.map(({ key, value }) => ({ key, value })) })));
        await transaction.commit();
      } catch (error) {
        await transaction.abort().catch(() => undefined);
        throw new AgentStreamsError(
          ErrorCode.PRODUCE_FAILED,
          `nothing sent to ${topic}: the transaction was aborted (${(error as Error).message})`,
          { cause: error },
        );
      }
      // The first offset written to each partition.
      const first = new Map<number, string>();
      for (const r of sent) if (!first.has(r.partition)) first.set(r.partition, r.baseOffset ?? r.offset ?? '?');
      const partitions = [...first]
        .sort(([a], [b]) => a - b)
        .map(([p, offset]) => `p${p}@${offset}`)
        .join(' ');
      const lineList = bad.length > 0 ? ` (lines ${messages.map((m) => m.line).join(', ')})` : '';
      console.log(
        `produced ${messages.length} ${subject} records to ${topic} in one transaction${lineList}; first offsets ${partitions}${bad.length > 0 ? `; skipped ${bad.length} invalid lines (${bad.map((b) => b.line).join(', ')})` : ''}`,
      );
      return bad.length > 0 ? EXIT_SKIPPED_LINES : 0;
    } finally {
      await producer.disconnect();
    }
  },
};
