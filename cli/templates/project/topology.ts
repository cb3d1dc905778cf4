/**
 * The application's topology: its topics and its processors, read top to bottom as the data flow. Each processor
 * is a consumer group; `agent-streams run topology.ts --processor NAME` starts one member of it.
 */
import { defineTopology, processor } from 'agent-streams';
import { application, pageCounts, pageViews, views } from './names.ts';
import { countViews } from './processors/count-views.ts';

export default defineTopology({
  application,
  topics: { [pageViews.name]: { partitions: 3 }, [pageCounts.name]: { partitions: 3 } },
  processors: {
    'count-views': processor({ inputs: [pageViews], outputs: [pageCounts], stores: [views], process: countViews }),
  },
});
