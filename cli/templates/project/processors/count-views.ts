/**
 * count-views: the running count of each page's visits. A processor decides and the runtime acts: it reads the
 * page's count from its store, writes it back and forwards the new count; the runtime batches the Redis and Kafka
 * round trips and commits each batch in one transaction, so a crash never counts a visit twice.
 */
import type { ProcessorContext, StreamRecord } from 'agent-streams';
import { pageCounts } from '../names.ts';
import { PageCountType, type PageCount, type PageView } from '../schemas/generated/types.ts';

export function countViews(record: StreamRecord, ctx: ProcessorContext): void {
  const view = record.value as PageView;
  const views = ctx.store<number>('views');
  const count = (views.get() ?? 0) + 1;
  views.set(count);
  const value: PageCount = { page: view.page, count };
  ctx.forward({ topic: pageCounts, key: view.page, recordType: PageCountType, value });
}
