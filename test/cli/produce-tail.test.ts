/**
 * `produce` (JSON Lines on stdin → Avro in one transaction) and `tail` (records decoded through the registry), run
 * as the real CLI against the real Kafka and registry. What produce sent is checked with a plain read_committed
 * consumer, independent of tail.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { registryClient } from '../../runtime/serde/avro.ts';
import { loadSchemas, registerSchemas } from '../../runtime/serde/schemas.ts';
import { lines, root, runCli } from '../support/cli.ts';
import { config, kafkaClient, uniqueName } from '../support/stack.ts';

// Each case starts the CLI a few times (a Node process each): a busy two-core machine must not fail them on time.
vi.setConfig({ testTimeout: 240_000 });

const kafka = kafkaClient();

async function createTopic(partitions: number): Promise<string> {
  const topic = uniqueName('cli-topic').replaceAll('_', '-');
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: partitions }], waitForLeaders: true });
  await admin.disconnect();
  return topic;
}

/** Committed records of a topic, by reading it to its end offsets with a throw-away group (no timers). */
async function committedRecords(
  topic: string,
): Promise<Array<{ partition: number; offset: number; key: string | null }>> {
  const admin = kafka.admin();
  await admin.connect();
  const ends = await admin.fetchTopicOffsets(topic);
  await admin.disconnect();
  const pending = new Set(ends.filter((e) => Number(e.high) > 0).map((e) => e.partition));
  const out: Array<{ partition: number; offset: number; key: string | null }> = [];
  if (pending.size === 0) return out;
  const consumer = kafka.consumer({ groupId: uniqueName('cli-check'), readUncommitted: false, maxWaitTimeInMs: 100 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await new Promise<void>((resolve) => {
    const end = (partition: number): number => Number(ends.find((e) => e.partition === partition)!.high);
    consumer.on(consumer.events.END_BATCH_PROCESS, (e) => {
      if (Number(e.payload.lastOffset) >= end(e.payload.partition) - 1) pending.delete(e.payload.partition);
      if (pending.size === 0) resolve();
    });
    void consumer.run({
      eachMessage: async ({ partition, message }) => {
        out.push({ partition, offset: Number(message.offset), key: message.key?.toString() ?? null });
      },
    });
  });
  await consumer.disconnect();
  return out;
}

const event = (key: string, amount: number): string =>
  JSON.stringify({ key, eventTime: 1_767_225_600_000 + amount, amount });

beforeAll(async () => {
  await registerSchemas(config, registryClient(config), loadSchemas(join(root, 'test/fixtures/schemas')));
});

describe('agent-streams produce', () => {
  it('sends every line of valid JSON Lines as Avro in one transaction, keyed by --key', async () => {
    const topic = await createTopic(3);
    const input = Array.from({ length: 20 }, (_, i) => event(`k${i % 4}`, i)).join('\n') + '\n';
    const result = await runCli(['produce', topic, '--type', 'Event', '--key', 'key'], { stdin: input });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(
      new RegExp(`^produced 20 agentstreams\\.test\\.Event records to ${topic} in one transaction`),
    );
    const records = await committedRecords(topic);
    expect(records).toHaveLength(20);
    expect(new Set(records.map((r) => r.key))).toEqual(new Set(['k0', 'k1', 'k2', 'k3']));
  });

  it('reports each bad line by number and sends nothing', async () => {
    const topic = await createTopic(1);
    const input = [
      event('a', 1),
      '{"key":"b","eventTime":2,"amount":"lots"}',
      'not json',
      '',
      event('c', 3),
      '{"key":"d","eventTime":4}',
    ].join('\n');
    const result = await runCli(['produce', topic, '--type', 'agentstreams.test.Event'], { stdin: input });
    expect(result.code).toBe(1);
    const errors = lines(result.stderr);
    expect(errors[0]).toMatch(/^line 2: does not match agentstreams\.test\.Event \(schema id \d+\): amount = "lots"$/);
    expect(errors[1]).toMatch(/^line 3: not JSON/);
    expect(errors[2]).toMatch(/^line 6: does not match .*amount = missing/);
    expect(errors[3]).toBe(
      `agent-streams produce: AS_RECORD_INVALID: nothing sent to ${topic}: 3 of 5 records are invalid (lines 2, 3, 6); fix them, or pass --skip-invalid to send the 2 valid ones`,
    );
    expect(errors).toHaveLength(4);
    expect(await committedRecords(topic)).toHaveLength(0);
  });

  it('with --skip-invalid sends the valid lines in one transaction and says which (exit 3)', async () => {
    const topic = await createTopic(1);
    const input = [event('a', 1), 'not json', event('c', 3)].join('\n');
    const result = await runCli(['produce', topic, '--type', 'Event', '--skip-invalid'], { stdin: input });
    expect(result.code).toBe(3);
    expect(result.stdout).toMatch(
      /^produced 2 agentstreams\.test\.Event records to .* in one transaction \(lines 1, 3\); first offsets p0@0; skipped 1 invalid lines \(2\)$/m,
    );
    expect(await committedRecords(topic)).toHaveLength(2);
  });

  it('refuses a type the registry does not have and a topic that does not exist', async () => {
    const topic = await createTopic(1);
    const noType = await runCli(['produce', topic, '--type', 'NoSuchType'], { stdin: `${event('a', 1)}\n` });
    expect(noType.code).toBe(1);
    expect(lines(noType.stderr)).toEqual([
      expect.stringMatching(
        /^agent-streams produce: AS_SCHEMA_INVALID: record type NoSuchType has no schema in the registry/,
      ),
    ]);
    const noTopic = await runCli(['produce', `${topic}-nope`, '--type', 'Event'], { stdin: `${event('a', 1)}\n` });
    expect(noTopic.code).toBe(1);
    expect(lines(noTopic.stderr)).toEqual([
      expect.stringMatching(/AS_TOPIC_NOT_FOUND: topic .*-nope does not exist .*nothing sent/),
    ]);
    const noInput = await runCli(['produce', topic, '--type', 'Event'], { stdin: '' });
    expect(noInput.code).toBe(2);
  });
});

describe('agent-streams tail', () => {
  it('prints the last records decoded, from the beginning, --max, as JSON Lines, and stops by itself', async () => {
    const topic = await createTopic(3);
    const input = Array.from({ length: 30 }, (_, i) => event(`k${i % 5}`, i)).join('\n');
    expect((await runCli(['produce', topic, '--type', 'Event', '--key', 'key'], { stdin: input })).code).toBe(0);
    // A record that is not Avro: shown as undecodable, not a crash.
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({ topic, messages: [{ key: 'raw', value: Buffer.from('plain text'), partition: 0 }] });
    await producer.disconnect();

    const all = await runCli(['tail', topic, '--from-beginning', '--format', 'json']);
    expect(all.code, all.stderr).toBe(0);
    const records = lines(all.stdout).map(
      (l) => JSON.parse(l) as { key: string; type?: string; value?: { amount: number }; error?: string },
    );
    expect(records).toHaveLength(31);
    const decoded = records.filter((r) => r.type === 'agentstreams.test.Event');
    expect(decoded.map((r) => r.value!.amount).sort((a, b) => a - b)).toEqual(Array.from({ length: 30 }, (_, i) => i));
    expect(records.find((r) => r.key === 'raw')?.error).toMatch(/magic|header|wire/i);

    const last = await runCli(['tail', topic, '--format', 'json']);
    expect(last.code).toBe(0);
    expect(lines(last.stdout)).toHaveLength(10);
    // The newest record is among the last ten; the first ones produced are not.
    expect(last.stdout).toContain('"key":"raw"');
    expect(last.stdout).not.toContain('"amount":0}');

    // It stopped at the end offsets, not on its idle safety stop.
    for (const run of [all, last]) expect(run.stderr).not.toContain('nothing more arrived');
    const three = await runCli(['tail', topic, '--from-beginning', '--max', '3', '--format', 'json']);
    expect(lines(three.stdout)).toHaveLength(3);

    const table = await runCli(['tail', topic, '--max', '5']);
    const rows = lines(table.stdout);
    expect(rows[0]).toMatch(/^\s+p\s+offset\s+timestamp\s+key\s+type\s+value$/);
    expect(rows).toHaveLength(6);
  });

  it('--follow prints records produced after it started, and --max stops it', async () => {
    const topic = await createTopic(2);
    expect((await runCli(['produce', topic, '--type', 'Event'], { stdin: `${event('old', 1)}\n` })).code).toBe(0);
    const child = spawn(
      process.execPath,
      [join(root, 'cli/bin.mjs'), 'tail', topic, '--follow', '--max', '4', '--format', 'json'],
      { cwd: root, env: process.env },
    );
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    try {
      // Until its throw-away group has joined, records produced may predate its start; produce until it has 4.
      let sent = 0;
      const deadline = Date.now() + 150_000;
      while (lines(stdout).length < 4 && Date.now() < deadline && child.exitCode === null) {
        expect(
          (await runCli(['produce', topic, '--type', 'Event'], { stdin: `${event(`new${sent}`, 100 + sent)}\n` })).code,
        ).toBe(0);
        sent += 1;
        await sleep(500);
      }
      expect(await exited).toBe(0);
      const keys = lines(stdout).map(
        (l) => (JSON.parse(l) as { key: string | null; value: { key: string } }).value.key,
      );
      expect(keys).toHaveLength(4);
      expect(keys).not.toContain('old');
      expect(keys.every((k) => k.startsWith('new'))).toBe(true);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  it('--follow without --max runs until SIGINT, then exits 0', async () => {
    const topic = await createTopic(1);
    const child = spawn(process.execPath, [join(root, 'cli/bin.mjs'), 'tail', topic, '--follow', '--format', 'json'], {
      cwd: root,
      env: process.env,
    });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    try {
      const deadline = Date.now() + 150_000;
      let sent = 0;
      while (lines(stdout).length === 0 && Date.now() < deadline && child.exitCode === null) {
        expect(
          (await runCli(['produce', topic, '--type', 'Event'], { stdin: `${event(`f${sent}`, sent)}\n` })).code,
        ).toBe(0);
        sent += 1;
        await sleep(500);
      }
      expect(lines(stdout).length).toBeGreaterThan(0);
      expect(child.exitCode).toBeNull();
      child.kill('SIGINT');
      expect(await exited).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
