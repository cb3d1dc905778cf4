/**
 * The application's topology: its topics and its processors, read top to bottom as the data flow. Each processor
 * is a consumer group; `agent-streams run topology.ts --processor NAME` starts one member of it.
 */
import { defineTopology, processor } from 'agent-streams';
import { application, pageCounts, pageViews } from './names.ts';
import { countViews } from './processors/count-views.ts';
import { PageCountType } from './schemas/generated/types.ts';

export default defineTopology({
  application,
  topics: { [pageViews]: { partitions: 3 }, [pageCounts]: { partitions: 3 } },
  processors: {
    'count-views': processor({ inputs: [pageViews], outputs: { [pageCounts]: [PageCountType] }, stores: ['views'], process: countViews }),
  },
});
