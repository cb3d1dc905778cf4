/** `agent-streams lag`: committed, end and lag per partition, for one group or every group of an application. */
import { describe, expect, it, vi } from 'vitest';
import { lines, runCli } from '../support/cli.ts';
import { kafkaClient, kafkajsAdmin, uniqueName } from '../support/stack.ts';

// Each case starts the CLI a few times (a Node process each): a busy two-core machine must not fail them on time.
vi.setConfig({ testTimeout: 240_000 });

const kafka = kafkaClient();

describe('agent-streams lag', () => {
  it('shows committed, end and lag per partition, for a group and for all groups of an application', async () => {
    const application = uniqueName('lagapp').replaceAll('_', '-');
    const topic = `${application}.input`;
    const admin = kafkajsAdmin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true });
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({
      topic,
      messages: [
        ...Array.from({ length: 7 }, () => ({ partition: 0, value: 'x' })),
        ...Array.from({ length: 4 }, () => ({ partition: 1, value: 'y' })),
      ],
    });
    await producer.disconnect();
    // Two groups of the application, as its members would leave them: one behind on both partitions, one that has
    // committed partition 0 only.
    await admin.setOffsets({
      groupId: `${application}.counter`,
      topic,
      partitions: [
        { partition: 0, offset: '2' },
        { partition: 1, offset: '4' },
      ],
    });
    await admin.setOffsets({ groupId: `${application}.other`, topic, partitions: [{ partition: 0, offset: '7' }] });
    await admin.disconnect();

    const one = await runCli(['lag', `${application}.counter`, '--format', 'json']);
    expect(one.code, one.stderr).toBe(0);
    expect(JSON.parse(one.stdout)).toEqual([
      { group: `${application}.counter`, topic, partition: 0, committed: 2, end: 7, lag: 5, member: '' },
      { group: `${application}.counter`, topic, partition: 1, committed: 4, end: 4, lag: 0, member: '' },
    ]);

    const all = await runCli(['lag', '--application', application, '--format', 'json']);
    expect(all.code, all.stderr).toBe(0);
    const rows = JSON.parse(all.stdout) as Array<{
      group: string;
      partition: number;
      committed: number | null;
      lag: number;
    }>;
    expect(rows.map((r) => [r.group, r.partition, r.committed, r.lag])).toEqual([
      [`${application}.counter`, 0, 2, 5],
      [`${application}.counter`, 1, 4, 0],
      [`${application}.other`, 0, 7, 0],
      // Never committed: every record of the partition is lag.
      [`${application}.other`, 1, null, 4],
    ]);

    const table = await runCli(['lag', '--application', application]);
    expect(table.code).toBe(0);
    const text = lines(table.stdout);
    expect(text[0]).toMatch(/^group\s+topic\s+partition\s+committed\s+end\s+lag\s+member$/);
    expect(text).toHaveLength(6);
    expect(text[4]).toMatch(
      new RegExp(`^${application}\\.other\\s+${topic.replaceAll('.', '\\.')}\\s+1\\s+-\\s+4\\s+4$`),
    );
    expect(text[5]).toBe('total lag 9 over 4 partitions of 2 groups');
  });

  it('a group nobody has used, and an application without groups, are one-line errors', async () => {
    const name = uniqueName('nolag').replaceAll('_', '-');
    const group = await runCli(['lag', `${name}.x`]);
    expect(group.code).toBe(1);
    expect(lines(group.stderr)).toEqual([
      `agent-streams lag: AS_GROUP_NOT_FOUND: consumer group ${name}.x has no members and no committed offsets: check its name (groups are <application>.<processor>; \`agent-streams lag --application APP\` lists an application's)`,
    ]);
    const app = await runCli(['lag', '--application', name]);
    expect(app.code).toBe(1);
    expect(lines(app.stderr)).toHaveLength(1);
    expect(app.stderr).toContain(`application "${name}" has no consumer groups`);
  });
});
