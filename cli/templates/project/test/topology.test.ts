/** The topology without a broker: TopologyTestDriver runs the same batch code as a member does. */
import { fileURLToPath } from 'node:url';
import { loadSchemas } from 'agent-streams';
import { TopologyTestDriver } from 'agent-streams/testing';
import { describe, expect, it } from 'vitest';
import { pageCounts, pageViews } from '../names.ts';
import { PageViewType, type PageCount, type PageView } from '../schemas/generated/types.ts';
import topology from '../topology.ts';

const schemas = loadSchemas(fileURLToPath(new URL('../schemas', import.meta.url)));
const view = (page: string, user: string): { key: string; recordType: string; value: PageView } => ({ key: page, recordType: PageViewType, value: { page, user, eventTime: Date.UTC(2026, 0, 1) } });

describe('count-views', () => {
  it('counts the visits of each page', () => {
    const driver = new TopologyTestDriver(topology, schemas);
    for (const [page, user] of [['/home', 'ada'], ['/docs', 'ada'], ['/home', 'bob']] as const) driver.pipe(pageViews, view(page, user));
    expect(driver.readOutput<PageCount>(pageCounts).map((r) => r.value)).toEqual([
      { page: '/home', count: 1 },
      { page: '/docs', count: 1 },
      { page: '/home', count: 2 },
    ]);
    expect(driver.readDeadLetters()).toEqual([]);
  });
});
