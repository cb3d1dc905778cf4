/**
 * `agent-streams feed`: the synthetic market feed into market.events, paced to --rate (or --fast), with scenarios
 * planted at offsets. --dry-run prints the records as JSON Lines instead (replayable with `agent-streams replay`).
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../../runtime/config/index.ts';
import { createLogger, installProcessLogger, lineLog, stderrDestination } from '../../runtime/observability/log.ts';
import { marketFeed, runFeed, type FeedOptions } from '../../connectors/synthetic-feed.ts';
import { usageError } from '../args.ts';
import type { Command } from '../main.ts';

function number(name: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(value)) throw usageError(`--${name} takes a number, got "${raw}"`);
  return value;
}

const options = {
  rate: { type: 'string' },
  duration: { type: 'string' },
  seed: { type: 'string' },
  symbols: { type: 'string' },
  scenario: { type: 'string', multiple: true, default: [] as string[] },
  start: { type: 'string' },
  'news-per-minute': { type: 'string' },
  'filings-per-hour': { type: 'string' },
  topic: { type: 'string' },
  partitions: { type: 'string' },
  fast: { type: 'boolean', default: false },
  speed: { type: 'string' },
  'dry-run': { type: 'boolean', default: false },
} as const;

export const feedCommand: Command = {
  summary:
    'Produce a seeded synthetic market feed (ticks, trades, news, filings) with planted scenarios to market.events',
  usage:
    'feed [--rate 1000] [--duration 60s] [--seed 1] [--symbols 50|ACME,BOLT,…] [--scenario drop:ACME:6%:2m@30s]… [--start ISO|now] ' +
    '[--news-per-minute 2] [--filings-per-hour 30] [--topic market.events] [--partitions 6] [--fast | --speed 10] [--dry-run]\n\n' +
    '--speed N paces event time N times faster than the wall clock (an hour of market in 6 minutes at 10).\n' +
    'Scenarios: drop:SYM:6%:2m@30s  volumeSpike:SYM:5x:3m@1m  volatility:SYM:4x:3m@1m  newsBurst:SYM:5[:1m]@45s  filing:SYM:8-K[:2.02,5.02]@60s',
  options,
  async run(args) {
    const parsed = parseArgs({ args, options });
    const { values } = parsed;
    const symbols =
      values.symbols === undefined
        ? undefined
        : /^\d+$/.test(values.symbols)
          ? Number(values.symbols)
          : values.symbols.split(',').map((s) => s.trim());
    const feed: FeedOptions = {
      ...(values.rate !== undefined ? { rate: number('rate', values.rate) } : {}),
      // A bare number is seconds here (`--duration 90`), as people type it; units work too (`--duration 2m`).
      ...(values.duration !== undefined
        ? { duration: /^\d+(\.\d+)?$/.test(values.duration) ? `${values.duration}s` : values.duration }
        : {}),
      ...(values.seed !== undefined ? { seed: number('seed', values.seed) } : {}),
      ...(symbols !== undefined ? { symbols } : {}),
      // `now` trades reproducibility of event times for event times close to the wall clock (live demos).
      ...(values.start !== undefined ? { start: values.start === 'now' ? Date.now() : values.start } : {}),
      ...(values['news-per-minute'] !== undefined
        ? { newsPerMinute: number('news-per-minute', values['news-per-minute']) }
        : {}),
      ...(values['filings-per-hour'] !== undefined
        ? { filingsPerHour: number('filings-per-hour', values['filings-per-hour']) }
        : {}),
      scenarios: values.scenario,
    };
    if (values['dry-run']) {
      // One line per record: the copies of a multi-symbol story (one per key) share their value object.
      let previous: unknown;
      let closed = false;
      // A reader that stops early (`| head`) is not an error.
      process.stdout.on('error', () => void (closed = true));
      let chunk: string[] = [];
      const write = async (): Promise<void> => {
        if (!process.stdout.write(chunk.join(''))) await new Promise((done) => process.stdout.once('drain', done));
        chunk = [];
      };
      for (const event of marketFeed(feed)) {
        if (closed) break;
        if (event.value === previous) continue;
        previous = event.value;
        chunk.push(`${JSON.stringify({ type: event.type, ...event.value })}\n`);
        if (chunk.length >= 1000) await write();
      }
      if (!closed) await write();
      return 0;
    }
    if (values.fast && values.speed !== undefined)
      throw usageError('--fast and --speed contradict each other: --fast does not pace at all');
    const config = loadConfig();
    // stdout may carry the feed itself (--stdout): the JSON log, kafkajs' included, goes to stderr.
    const logger = installProcessLogger(
      createLogger({ application: config.kafka.clientId, processor: 'feed', config, destination: stderrDestination() }),
    );
    const controller = new AbortController();
    const stop = (): void => controller.abort();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    const tty = process.stderr.isTTY;
    try {
      const result = await runFeed(config, {
        ...feed,
        ...(values.topic !== undefined ? { topic: values.topic } : {}),
        ...(values.partitions !== undefined ? { partitions: number('partitions', values.partitions) } : {}),
        pace: !values.fast,
        ...(values.speed !== undefined ? { speed: number('speed', values.speed) } : {}),
        signal: controller.signal,
        log: lineLog(logger, 'feed'),
        onProgress: (p) => {
          const line = `feed: ${p.events.toLocaleString('en-US')} events, event time ${new Date(p.eventTime).toISOString()}, ${Math.round(p.events / (p.elapsedMs / 1000)).toLocaleString('en-US')} events/s`;
          if (tty) process.stderr.write(`\r\x1b[K${line}`);
        },
      });
      if (tty) process.stderr.write('\r\x1b[K');
      const types = Object.entries(result.byType)
        .map(([t, n]) => `${t} ${n}`)
        .join(', ');
      console.log(
        `${result.aborted ? 'stopped early: ' : ''}produced ${result.events} events (${types}) to ${result.topic} (${result.partitions} partitions) in ${result.seconds.toFixed(1)} s: ${result.eventsPerSecond} events/s; ` +
          `event time ${new Date(result.firstEventTime).toISOString()} → ${new Date(result.lastEventTime).toISOString()}`,
      );
      return 0;
    } finally {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    }
  },
};
