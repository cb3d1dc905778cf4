/**
 * `stack up --brokers 3` on a private folder and ports: three combined KRaft nodes voting in one quorum, internal
 * topics replicated, a bootstrap of all three in `status`, single nodes killed and restarted, and `down` stopping
 * exactly the cluster's pids. The shared single-broker stack is never touched.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import kafkajs from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStackContext, stackDown, stackStatus, stackUp } from '../../../infra/local/stack.ts';
import { isAlive, readPid } from '../../../infra/local/process.ts';
import { kafkaNodePorts } from '../../../infra/local/services/kafka.ts';
import { ErrorCode } from '../../../runtime/errors.ts';
import { startPrivateCluster, type PrivateCluster } from '../../support/private-broker.ts';
import { config as sharedConfig, withKafkajsAdmin } from '../../support/stack.ts';
import { testStackKind } from '../../support/stack-kind.ts';

const { ConfigResourceTypes } = kafkajs;
const root = join(import.meta.dirname, '../../..');

describe.runIf(testStackKind === 'local')('a three-broker local cluster', () => {
  let cluster: PrivateCluster;
  beforeAll(async () => {
    cluster = await startPrivateCluster('cluster-infra', 3);
    console.log(`3-broker cluster up in ${cluster.startupSeconds.toFixed(1)}s (formatting included)`);
  }, 240_000);
  afterAll(async () => {
    await cluster?.remove();
  });
  const ctx = (kafkaBrokers?: number) =>
    createStackContext(cluster.config, root, () => {}, kafkaBrokers === undefined ? {} : { kafkaBrokers });

  it('runs three combined broker+controller nodes, each on its own ports and folder, in one 3-voter quorum', async () => {
    const pids = cluster.pids();
    expect(pids.every((pid) => pid !== undefined)).toBe(true);
    expect(new Set(pids).size).toBe(3);
    const listening = execFileSync('ss', ['-ltnpH'], { encoding: 'utf8' }).split('\n');
    const voters = [0, 1, 2]
      .map((i) => `${i + 1}@127.0.0.1:${kafkaNodePorts(cluster.config.stack, i).controller}`)
      .join(',');
    for (const [i, pid] of pids.entries()) {
      const ports = listening
        .filter((line) => line.includes(`pid=${pid},`))
        .map((line) => Number(line.split(/\s+/)[3]!.split(':').pop()));
      const { client, controller } = kafkaNodePorts(cluster.config.stack, i);
      expect(ports.sort()).toEqual([client, controller].sort());
      const properties = readFileSync(join(ctx().serviceDir('kafka'), `node-${i}`, 'server.properties'), 'utf8');
      expect(properties).toContain(`node.id=${i + 1}\n`);
      expect(properties).toContain(`controller.quorum.voters=${voters}\n`);
      expect(properties).toContain('process.roles=broker,controller\n');
    }
    const admin = cluster.kafka.admin();
    await admin.connect();
    try {
      const described = await admin.describeCluster();
      expect(described.brokers.map((b) => [b.nodeId, b.port]).sort()).toEqual(
        [0, 1, 2].map((i) => [i + 1, kafkaNodePorts(cluster.config.stack, i).client]),
      );
    } finally {
      await admin.disconnect();
    }
  });

  it('replicates the offsets and transaction-state topics to 3 with min.insync.replicas 2', async () => {
    const { kafka } = cluster;
    const admin = kafka.admin();
    await admin.connect();
    try {
      await admin.createTopics({ waitForLeaders: true, topics: [{ topic: 'probe', numPartitions: 2 }] });
      const producer = kafka.producer({ transactionalId: 'cluster-probe', idempotent: true, maxInFlightRequests: 1 });
      await producer.connect();
      const tx = await producer.transaction();
      await tx.send({ topic: 'probe', messages: [{ value: 'x' }] });
      await tx.commit();
      await producer.disconnect();
      // Looking up a group's coordinator creates the offsets topic; its coordinators load a moment later.
      for (let attempt = 0; ; attempt++) {
        const failed = await admin.fetchOffsets({ groupId: 'cluster-probe', topics: ['probe'] }).then(
          () => undefined,
          (error: Error) => error,
        );
        if (!failed) break;
        if (attempt >= 40) throw failed;
        await sleep(250);
      }
      const internal = ['__consumer_offsets', '__transaction_state'];
      let metadata = await admin.fetchTopicMetadata({ topics: internal }).catch(() => undefined);
      for (let i = 0; i < 50 && !metadata; i++)
        metadata = await admin.fetchTopicMetadata({ topics: internal }).catch(() => undefined);
      for (const t of metadata!.topics)
        for (const p of t.partitions) expect([t.name, p.replicas.length]).toEqual([t.name, 3]);
      const configs = await withKafkajsAdmin(cluster.config.kafka.brokers, (a) =>
        a.describeConfigs({
          includeSynonyms: false,
          resources: [...internal, 'probe'].map((name) => ({
            type: ConfigResourceTypes.TOPIC,
            name,
            configNames: ['min.insync.replicas'],
          })),
        }),
      );
      expect(configs.resources.map((r) => [r.resourceName, r.configEntries[0]?.configValue]).sort()).toEqual([
        ['__consumer_offsets', '2'],
        ['__transaction_state', '2'],
        ['probe', '2'],
      ]);
    } finally {
      await admin.disconnect();
    }
  });

  it('status lists all three; a killed node is seen and restarted alone; another size is refused; down stops exactly its pids', async () => {
    const [row] = await stackStatus(ctx(), ['kafka']);
    expect(row).toMatchObject({
      state: 'healthy',
      endpoint: cluster.config.kafka.brokers.join(','),
      pids: cluster.pids(),
    });
    expect(cluster.config.kafka.brokers).toHaveLength(3);

    const [first, second, third] = cluster.pids();
    await cluster.killNode(1);
    const [degraded] = await stackStatus(ctx(), ['kafka']);
    expect(degraded).toMatchObject({ state: 'unhealthy', pids: [first, third] });
    const restartedAt = Date.now();
    await cluster.restartNode(1);
    console.log(`node 1 restarted and registered in ${((Date.now() - restartedAt) / 1000).toFixed(1)}s`);
    const after = cluster.pids();
    expect(after[0]).toBe(first);
    expect(after[2]).toBe(third);
    expect(after[1]).not.toBe(second);
    expect((await stackStatus(ctx(), ['kafka']))[0]!.state).toBe('healthy');

    const refused = await stackUp(ctx(1), ['kafka']).catch((e: unknown) => e as Error);
    expect((refused as { code?: string }).code).toBe(ErrorCode.STACK_START_FAILED);
    expect((refused as Error).message).toContain('holds the data of 3 Kafka brokers, not 1');

    const shared = readPid(join(createStackContext(sharedConfig, root).serviceDir('kafka'), 'kafka.pid'));
    const down = await stackDown(ctx(), ['kafka']);
    expect(down).toEqual([{ name: 'kafka', action: 'stopped' }]);
    for (const pid of after) expect(isAlive(pid!)).toBe(false);
    if (shared !== undefined) expect(isAlive(shared)).toBe(true);
    expect((await stackStatus(ctx(), ['kafka']))[0]!.state).toBe('stopped');
  }, 120_000);
});
