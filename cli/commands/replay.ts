/**
 * `agent-streams replay <file>`: JSON Lines or CSV rows into market.events as Avro, every row validated first.
 * Exit status: 0 every row produced; 3 some rows were invalid and skipped (listed); 1 the run failed.
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../../runtime/config/index.ts';
import { createLogger, installProcessLogger, lineLog, stderrDestination } from '../../runtime/observability/log.ts';
import { isAgentStreamsError, ErrorCode } from '../../runtime/errors.ts';
import { replayFile, type InvalidRow, type OnInvalid, type ReplayFormat } from '../../connectors/file-replay.ts';
import { formatProblems } from '../../connectors/market-records.ts';
import { usageError } from '../args.ts';
import type { Command } from '../main.ts';

/** Exit status when the replay finished but skipped invalid rows: scripts can tell it from full success. */
export const EXIT_SKIPPED_ROWS = 3;

function listInvalid(rows: readonly InvalidRow[], total: number, shown: number): void {
  for (const row of rows.slice(0, shown))
    console.error(`  line ${row.line}${row.type ? ` (${row.type})` : ''}: ${formatProblems(row.problems)}`);
  if (total > Math.min(shown, rows.length))
    console.error(
      `  … and ${total - Math.min(shown, rows.length)} more (--rejects FILE keeps them all, --show N lists more)`,
    );
}

const options = {
  type: { type: 'string' },
  format: { type: 'string' },
  'on-invalid': { type: 'string', default: 'skip' },
  rejects: { type: 'string' },
  show: { type: 'string', default: '20' },
  'dry-run': { type: 'boolean', default: false },
  topic: { type: 'string' },
  partitions: { type: 'string' },
  batch: { type: 'string' },
} as const;

export const replayCommand: Command = {
  summary:
    'Replay a JSON Lines or CSV file into market.events as Avro; invalid rows are listed with line numbers and skipped (or fail the run)',
  usage:
    'replay <file> [--type PriceTick|Trade|NewsItem|Filing] [--format jsonl|csv] [--on-invalid skip|fail] [--rejects FILE] [--show 20] ' +
    '[--dry-run] [--topic market.events] [--partitions 6] [--batch 1000]',
  options,
  files: true,
  async run(args) {
    const parsed = parseArgs({ args, allowPositionals: true, options });
    const { positionals, values } = parsed;
    const [file] = positionals;
    if (!file || positionals.length > 1) throw usageError('replay needs exactly one file');
    if (values.format !== undefined && values.format !== 'jsonl' && values.format !== 'csv')
      throw usageError(`--format must be jsonl or csv, got "${values.format}"`);
    if (values['on-invalid'] !== 'skip' && values['on-invalid'] !== 'fail')
      throw usageError(`--on-invalid must be skip or fail, got "${values['on-invalid']}"`);
    const whole = (name: string, raw: string | undefined): number | undefined => {
      if (raw === undefined) return undefined;
      if (!/^\d+$/.test(raw)) throw usageError(`--${name} takes a whole number, got "${raw}"`);
      return Number(raw);
    };
    const shown = whole('show', values.show)!;
    const partitions = whole('partitions', values.partitions);
    const batchSize = whole('batch', values.batch);
    const config = loadConfig();
    // stdout carries the summary: the JSON log, kafkajs' included, goes to stderr.
    const logger = installProcessLogger(
      createLogger({
        application: config.kafka.clientId,
        processor: 'replay',
        config,
        destination: stderrDestination(),
      }),
    );
    try {
      const summary = await replayFile(config, {
        file,
        ...(values.format !== undefined ? { format: values.format as ReplayFormat } : {}),
        ...(values.type !== undefined ? { type: values.type } : {}),
        onInvalid: values['on-invalid'] as OnInvalid,
        ...(values.rejects !== undefined ? { rejectsFile: values.rejects } : {}),
        ...(values.topic !== undefined ? { topic: values.topic } : {}),
        ...(partitions !== undefined ? { partitions } : {}),
        ...(batchSize !== undefined ? { batchSize } : {}),
        dryRun: values['dry-run'],
        maxListed: Math.max(shown, 1),
        log: lineLog(logger, 'replay'),
      });
      const types =
        Object.entries(summary.byType)
          .filter(([, n]) => n > 0)
          .map(([t, n]) => `${t} ${n}`)
          .join(', ') || 'none';
      const target = summary.topic
        ? `produced ${summary.produced} (${summary.messages} records) to ${summary.topic}`
        : `${summary.produced} valid (dry run: nothing produced)`;
      console.log(
        `${file} (${summary.format}): ${summary.rows} rows, ${target}; ${types}; ${summary.invalidCount} invalid; ${summary.seconds.toFixed(2)} s, ${summary.rowsPerSecond} rows/s`,
      );
      if (summary.invalidCount === 0) return 0;
      console.error(`${summary.invalidCount} invalid rows${summary.topic ? ' were skipped' : ''}:`);
      listInvalid(summary.invalid, summary.invalidCount, shown);
      return EXIT_SKIPPED_ROWS;
    } catch (error) {
      if (isAgentStreamsError(error, ErrorCode.RECORD_INVALID) && Array.isArray(error.details.invalid)) {
        console.error(`agent-streams replay: ${error.code}: ${error.message}`);
        const invalid = error.details.invalid as InvalidRow[];
        listInvalid(
          invalid,
          typeof error.details.invalidCount === 'number' ? error.details.invalidCount : invalid.length,
          shown,
        );
        return 1;
      }
      throw error;
    }
  },
};
