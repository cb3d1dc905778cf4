/** `agent-streams dead-letters list`: table (reasons cut at a word boundary with …) and JSON (whole), one dead letter planted. */
import { describe, expect, it, vi } from 'vitest';
import { deadLetterHeader } from '../../runtime/engine/dead-letter.ts';
import { lines, runCli } from '../support/cli.ts';
import { kafkaClient, uniqueName } from '../support/stack.ts';

// Each case starts the CLI a few times (a Node process each): a busy two-core machine must not fail them on time.
vi.setConfig({ testTimeout: 240_000 });

describe('agent-streams dead-letters list', () => {
  it('lists a dead letter as a table and as JSON', async () => {
    const application = uniqueName('dlq').replaceAll('_', '-');
    const env = { AS_FIXTURE_APP: application, AS_FIXTURE_INPUT: `${application}.input` };
    const reason = Array.from({ length: 30 }, (_, i) => `because${i}`).join(' ');
    const kafka = kafkaClient();
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({
      topics: [{ topic: `${application}.dead-letters`, numPartitions: 1 }],
      waitForLeaders: true,
    });
    await admin.disconnect();
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({
      topic: `${application}.dead-letters`,
      messages: [
        {
          key: 'k1',
          value: Buffer.from('bad bytes'),
          headers: {
            [deadLetterHeader.topic]: `${application}.input`,
            [deadLetterHeader.partition]: '3',
            [deadLetterHeader.offset]: '42',
            [deadLetterHeader.processor]: 'counter',
            [deadLetterHeader.stage]: 'deserialize',
            [deadLetterHeader.errorCode]: 'AS_DESERIALIZE',
            [deadLetterHeader.errorMessage]: reason,
          },
        },
      ],
    });
    await producer.disconnect();

    const json = await runCli(
      ['dead-letters', 'list', 'test/fixtures/topologies/window-count.ts', '--format', 'json'],
      { env },
    );
    expect(json.code, json.stderr).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual([
      expect.objectContaining({
        key: 'k1',
        source: { topic: `${application}.input`, partition: 3, offset: '42' },
        processor: 'counter',
        stage: 'deserialize',
        errorCode: 'AS_DESERIALIZE',
        errorMessage: reason,
      }),
    ]);

    const table = await runCli(['dead-letters', 'list', 'test/fixtures/topologies/window-count.ts'], { env });
    expect(table.code, table.stderr).toBe(0);
    const [summary, header, row] = lines(table.stdout);
    expect(summary).toBe(`1 dead letters in ${application}.dead-letters`);
    expect(header).toMatch(/^source\s+processor\s+stage\s+code\s+reason$/);
    expect(row).toMatch(
      new RegExp(
        `^${application}\\.input\\[3\\]@42\\s+counter\\s+deserialize\\s+AS_DESERIALIZE\\s+because0 because1 .*because\\d+…$`,
      ),
    );
    const shown = row!.slice(header!.indexOf('reason'), -1);
    expect(reason.startsWith(shown)).toBe(true);
    expect(reason[shown.length]).toBe(' ');
  });
});
