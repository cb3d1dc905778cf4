/**
 * count-views: the running count of each page's visits. A processor decides and the runtime acts: it reads the
 * page's count from its store, writes it back and forwards the new count; the runtime batches the Redis and Kafka
 * round trips and commits each batch in one transaction, so a crash never counts a visit twice.
 */
import type { ProcessorContext, RecordOf } from 'agent-streams';
import { pageCounts, type pageViews, views } from '../names.ts';

export function countViews(record: RecordOf<typeof pageViews>, ctx: ProcessorContext): void {
  const { page } = record.value;
  const state = ctx.store(views);
  const count = (state.get() ?? 0) + 1;
  state.set(count);
  ctx.forward(pageCounts, { key: page, value: { page, count } });
}
