import { describe, expect, it } from 'vitest';
import { AgentStreamsError, defineTopology, ErrorCode, processor, router } from '../../../runtime/index.ts';
import { ensureTopics } from '../../../runtime/engine/topics.ts';
import { kafkaClient, uniqueName } from '../../support/stack.ts';

const noop = processor({ inputs: ['a'], process: () => {} });

function problems(build: () => unknown): string {
  try {
    build();
  } catch (error) {
    expect(error).toBeInstanceOf(AgentStreamsError);
    expect((error as AgentStreamsError).code).toBe(ErrorCode.TOPOLOGY_INVALID);
    return (error as Error).message;
  }
  throw new Error('expected the topology to be refused');
}

describe('defineTopology', () => {
  it('names every problem of a declaration at once', () => {
    const message = problems(() =>
      defineTopology({
        application: 'Bad_App',
        topics: { a: { partitions: 6 }, b: { partitions: 3 }, 'c d': { partitions: 0 } },
        processors: {
          join: processor({ inputs: ['a', 'b'], process: () => {} }),
          lost: processor({ inputs: ['nowhere'], outputs: { elsewhere: ['x.Y'] }, process: () => {} }),
          route: router({ inputs: ['a'], routes: { 'x.Y': 'b' }, outputs: {} }),
          Upper: noop,
        },
      }),
    );
    expect(message).toContain('application "Bad_App"');
    expect(message).toContain('topic "c d" has characters Kafka does not allow');
    expect(message).toContain('topic "c d" needs 1–1000 partitions, got 0');
    expect(message).toContain('processor "join" reads a, b which have different partition counts');
    expect(message).toContain('processor "lost" reads unknown topic "nowhere"');
    expect(message).toContain('processor "lost" writes unknown topic "elsewhere"');
    expect(message).toContain('router "route" routes x.Y to b but does not declare it in outputs');
    expect(message).toContain('processor "Upper" must match');
  });

  it('derives group, changelog, dead-letter and late-record names from the application', () => {
    const topology = defineTopology({
      application: 'fleet',
      topics: { a: { partitions: 2 } },
      processors: { agent: noop },
    });
    expect(topology.groupId('agent')).toBe('fleet.agent');
    expect(topology.changelogTopic('agent')).toBe('fleet.agent.changelog');
    expect(topology.deadLetterTopic).toBe('fleet.dead-letters');
    expect(topology.lateTopic).toBe('fleet.late-records');
    expect(() => topology.storesOf('missing')).toThrow(/has no processor "missing"; it has agent/);
  });

  it('refuses to start when a topic exists with another partition count than declared', async () => {
    const topic = uniqueName('mismatch');
    const admin = kafkaClient().admin();
    await admin.connect();
    try {
      await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true });
      const topology = defineTopology({
        application: uniqueName('app').replaceAll('_', '-'),
        topics: { [topic]: { partitions: 6 } },
        processors: { agent: processor({ inputs: [topic], process: () => {} }) },
      });
      const error = await ensureTopics(admin, topology, 'agent').catch((e: unknown) => e);
      expect((error as AgentStreamsError).code).toBe(ErrorCode.TOPOLOGY_INVALID);
      expect((error as Error).message).toContain(`${topic} has 2 partitions, the topology declares 6`);
    } finally {
      await admin.disconnect();
    }
  });
});
