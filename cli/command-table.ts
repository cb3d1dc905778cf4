/** Every command of `agent-streams`, by name: main.ts dispatches from it, and shell completion is generated from it. */
import type { Command } from './main.ts';
import { stackCommand } from './commands/stack.ts';
import { migrateCommand } from './commands/migrate.ts';
import { configCommand } from './commands/config.ts';
import { demoCommand } from './commands/demo.ts';
import { testCommand } from './commands/test.ts';
import { runCommand } from './commands/run.ts';
import { smokeCommand } from './commands/smoke.ts';
import { alertsCommand, digestCommand, findingsCommand } from './commands/query.ts';
import { sinkCommand } from './commands/sink.ts';
import { tableCommand } from './commands/table.ts';
import { schemasCommand } from './commands/schemas.ts';
import { deadLettersCommand } from './commands/dead-letters.ts';
import { feedCommand } from './commands/feed.ts';
import { replayCommand } from './commands/replay.ts';
import { ingestCommand } from './commands/ingest.ts';
import { k8sCommand } from './commands/k8s.ts';
import { imageCommand } from './commands/image.ts';
import { tailCommand } from './commands/tail.ts';
import { produceCommand } from './commands/produce.ts';
import { lagCommand } from './commands/lag.ts';
import { topologyCommand } from './commands/topology.ts';
import { completionCommand } from './commands/completion.ts';
import { initCommand } from './commands/init.ts';

export const commands: Record<string, Command> = {
  init: initCommand,
  demo: demoCommand,
  test: testCommand,
  run: runCommand,
  smoke: smokeCommand,
  findings: findingsCommand,
  alerts: alertsCommand,
  digest: digestCommand,
  tail: tailCommand,
  produce: produceCommand,
  lag: lagCommand,
  topology: topologyCommand,
  sink: sinkCommand,
  table: tableCommand,
  schemas: schemasCommand,
  'dead-letters': deadLettersCommand,
  feed: feedCommand,
  replay: replayCommand,
  ingest: ingestCommand,
  stack: stackCommand,
  migrate: migrateCommand,
  config: configCommand,
  k8s: k8sCommand,
  image: imageCommand,
  completion: completionCommand,
};
