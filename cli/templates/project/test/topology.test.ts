/** The topology without a broker: TopologyTestDriver runs the same batch code as a member does. */
import { fileURLToPath } from 'node:url';
import { loadSchemas } from 'agent-streams';
import { TopologyTestDriver } from 'agent-streams/testing';
import { describe, expect, it } from 'vitest';
import { pageCounts, pageViews, views } from '../names.ts';
import topology from '../topology.ts';

const schemas = loadSchemas(fileURLToPath(new URL('../schemas', import.meta.url)));

describe('count-views', () => {
  it('counts the visits of each page', () => {
    const driver = new TopologyTestDriver(topology, schemas);
    for (const [page, user] of [
      ['/home', 'ada'],
      ['/docs', 'ada'],
      ['/home', 'bob'],
    ] as const) {
      driver.pipe(pageViews, { key: page, value: { page, user, eventTime: Date.UTC(2026, 0, 1) } });
    }
    expect(driver.readOutput(pageCounts).map((r) => r.value)).toEqual([
      { page: '/home', count: 1 },
      { page: '/docs', count: 1 },
      { page: '/home', count: 2 },
    ]);
    expect(driver.stateOf('count-views', views, '/home')).toBe(2);
    expect(driver.readDeadLetters()).toEqual([]);
  });
});
