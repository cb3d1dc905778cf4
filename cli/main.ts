/**
 * `agent-streams <command>`: one table of commands (cli/command-table.ts), each a small module under cli/commands/.
 * Whatever a command throws ends here and becomes one line on stderr (cli/failure.ts): exit 2 for a usage error,
 * 1 for a runtime error.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  createLogger,
  installProcessLogger,
  lineLog,
  processLogger,
  stderrDestination,
} from '../runtime/observability/log.ts';
import { startTracing } from '../runtime/observability/tracing.ts';
import { closest, type Options } from './args.ts';
import { commands } from './command-table.ts';
import { describeFailure, EXIT_USAGE } from './failure.ts';
import { projectRoot } from './paths.ts';

export { usageError } from './args.ts';

export interface Command {
  summary: string;
  usage: string;
  /** Its flags as util.parseArgs takes them: the command parses with these, and --help and completion list them. */
  options?: Options;
  /** The words its first argument may be (sub-commands such as `list`, `redrive`), for completion. */
  actions?: readonly string[];
  /** Whether its arguments are file names (completion offers files). */
  files?: boolean;
  run(args: string[]): Promise<number>;
}

/**
 * The long-running commands, traced when an OTLP endpoint is configured (docs/tracing.md); a command returns after
 * its SIGTERM/SIGINT drain, and the SDK's shutdown then flushes the spans still buffered.
 */
const TRACED_COMMANDS: ReadonlySet<string> = new Set(['run', 'sink', 'ingest', 'feed']);

/**
 * One-shot commands whose stdout is data (or a short summary): the client libraries' own log lines (a ClickHouse
 * "HTTP request error", kafkajs' reconnect attempts) would bury the one error line, and break `--format json | jq`.
 * Their log is off (AS_DEBUG=1: on, to stderr); what fails is still reported, once, by cli/failure.ts.
 */
const QUIET_COMMANDS: ReadonlySet<string> = new Set([
  'findings',
  'alerts',
  'digest',
  'tail',
  'produce',
  'lag',
  'dead-letters',
  'table',
  'migrate',
  'schemas',
  'config',
  'topology',
  'completion',
]);

export function version(): string {
  return (JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as { version: string }).version;
}

function help(): string {
  const rows = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(12)} ${c.summary}`);
  return (
    `agent-streams ${version()}: a Kafka Streams-style runtime for fleets of AI agents\n\nUsage: agent-streams <command> [options]\n\n${rows.join('\n')}\n\n` +
    `Run 'agent-streams <command> --help' for a command's options, 'agent-streams --version' for the version.\n` +
    `Exit status: 0 done, 1 runtime error, 2 usage error (a command may document others).`
  );
}

function commandHelp(command: Command): string {
  const flags = Object.entries(command.options ?? {}).map(([flag, o]) => {
    const value = o.type === 'string' ? ` ${flag.toUpperCase().replaceAll('-', '_')}` : '';
    const short = o.short ? `-${o.short}, ` : '';
    const fallback = o.default !== undefined && o.type === 'string' ? ` (default ${String(o.default)})` : '';
    return `  ${short}--${flag}${value}${o.multiple ? ' (repeatable)' : ''}${fallback}`;
  });
  return `Usage: agent-streams ${command.usage}\n\n${command.summary}${flags.length > 0 ? `\n\nOptions:\n${flags.join('\n')}` : ''}\n  -h, --help`;
}

export async function main(argv: string[]): Promise<number> {
  // A reader that stops early (`agent-streams config --settings | head`) is not an error: no EPIPE stack trace.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(0);
    throw error;
  });
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? console.error : console.log)(help());
    return name === undefined ? EXIT_USAGE : 0;
  }
  if (name === '--version' || name === '-V') {
    console.log(`agent-streams ${version()}`);
    return 0;
  }
  const command = commands[name];
  if (!command) {
    const guess = closest(name, Object.keys(commands));
    const what = name.startsWith('-') ? `unknown option ${name}` : `unknown command "${name}"`;
    console.error(
      `agent-streams: ${what}${guess && !name.startsWith('-') ? ` (did you mean "${guess}"?)` : ''}; 'agent-streams --help' lists the commands`,
    );
    return EXIT_USAGE;
  }
  // `test` hands its arguments to vitest, which has its own --help.
  if (name !== 'test' && (rest.includes('--help') || rest.includes('-h'))) {
    console.log(commandHelp(command));
    return 0;
  }
  if (QUIET_COMMANDS.has(name)) {
    const debug = process.env.AS_DEBUG === '1' || process.env.AS_DEBUG === 'true';
    installProcessLogger(
      createLogger({
        application: 'agent-streams',
        processor: name,
        destination: stderrDestination(),
        level: debug ? 'debug' : 'silent',
      }),
    );
  }
  const tracing = TRACED_COMMANDS.has(name)
    ? await startTracing(`agent-streams-${name}`, lineLog(processLogger(), 'tracing'))
    : undefined;
  try {
    return await command.run(rest);
  } catch (error) {
    const failure = describeFailure(error, name, Object.keys(command.options ?? {}));
    console.error(failure.line);
    return failure.exitCode;
  } finally {
    await tracing?.shutdown();
  }
}
