/**
 * `agent-streams <command>`: one table of commands, each a small module under cli/commands/. Errors from the
 * project print their code and message (no stack trace) and exit 1; usage errors exit 2.
 */
import { AgentStreamsError, ErrorCode } from '../runtime/errors.ts';
import { lineLog, processLogger } from '../runtime/observability/log.ts';
import { startTracing } from '../runtime/observability/tracing.ts';
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

export interface Command {
  summary: string;
  usage: string;
  run(args: string[]): Promise<number>;
}

const commands: Record<string, Command> = {
  demo: demoCommand,
  test: testCommand,
  run: runCommand,
  smoke: smokeCommand,
  findings: findingsCommand,
  alerts: alertsCommand,
  digest: digestCommand,
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
};

/**
 * The long-running commands, traced when an OTLP endpoint is configured (docs/tracing.md); a command returns after
 * its SIGTERM/SIGINT drain, and the SDK's shutdown then flushes the spans still buffered.
 */
const TRACED_COMMANDS: ReadonlySet<string> = new Set(['run', 'sink', 'ingest', 'feed']);

function help(): string {
  const rows = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`);
  return `agent-streams: a Kafka Streams-style runtime for fleets of AI agents\n\nUsage: agent-streams <command> [options]\n\n${rows.join('\n')}\n\nRun 'agent-streams <command> --help' for a command's options.`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(help());
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (!command) {
    console.error(`agent-streams: unknown command "${name}".\n\n${help()}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(`Usage: agent-streams ${command.usage}\n\n${command.summary}`);
    return 0;
  }
  const tracing = TRACED_COMMANDS.has(name) ? await startTracing(`agent-streams-${name}`, lineLog(processLogger(), 'tracing')) : undefined;
  try {
    return await command.run(rest);
  } catch (error) {
    if (error instanceof AgentStreamsError) {
      console.error(`agent-streams ${name}: ${error.code}: ${error.message}`);
      return error.code === ErrorCode.USAGE ? 2 : 1;
    }
    throw error;
  } finally {
    await tracing?.shutdown();
  }
}

export function usageError(message: string): AgentStreamsError {
  return new AgentStreamsError(ErrorCode.USAGE, message);
}
