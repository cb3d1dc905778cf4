/**
 * One line per benchmark run, from bench/results/*.json: the knobs of the run and events/s of each phase (the bar's
 * measure, then after join in brackets; `*` marks a phase during which other work used > 0.2 cores, i.e. a disturbed
 * figure). The latency phases show p50 / p99 in ms of the measured part, and the achieved rate in brackets.
 * For comparing knob settings across runs.
 *
 *   npx tsx bench/results-table.ts [FILE.json ...]      (default: every file in bench/results)
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

interface Phase {
  status: string;
  events?: number;
  processed: number;
  joinMs: number | null;
  eps: { headline: number | null; afterJoin: number | null };
  cores: Record<string, number>;
  latency?: { achievedRate: number; measured: { p50: number | null; p99: number | null } };
}

interface Run {
  meta: {
    date: string;
    label: string;
    events: number;
    concurrency: number;
    maxBytesPerPartition: number;
    tradeShare?: number;
    padBytes?: number;
    kafkajsLinearGrouping?: boolean;
    profiled: boolean;
    revision: string;
  };
  phases: Record<string, Phase>;
}

const dir = resolve(import.meta.dirname, 'results');
const files =
  process.argv.length > 2
    ? process.argv.slice(2)
    : readdirSync(dir)
        .filter((f) => f.endsWith('.json'))
        .sort()
        .map((f) => join(dir, f));
const phases = ['baseline', 'baseline-chunked', 'router', 'windowed', 'latency-baseline', 'latency'];

const bytes = (n: number): string => (n >= 2 ** 20 ? `${n / 2 ** 20}MiB` : `${n / 2 ** 10}KiB`);
const k = (n: number | null | undefined): string => (n === null || n === undefined ? '—' : `${(n / 1000).toFixed(1)}k`);

const rows: string[][] = [
  ['run', 'revision', 'label', 'events', 'fetch/part', 'conc', 'kafkajs', ...phases, 'other cores (max)'],
];
for (const file of files) {
  const run = JSON.parse(readFileSync(file, 'utf8')) as Run;
  const m = run.meta;
  const cells = phases.map((p) => {
    const r = run.phases[p];
    if (!r) return '';
    if (r.status !== 'ok') return `${r.status} (${Math.round((r.processed / (r.events ?? m.events)) * 100)}%)`;
    const l = r.latency;
    const ms = (v: number | null): string => (v === null ? '—' : v.toFixed(1));
    if (l)
      return `${ms(l.measured.p50)} / ${ms(l.measured.p99)} ms (${k(l.achievedRate)}/s)${(r.cores.others ?? 0) > 0.2 ? ' *' : ''}`;
    return `${k(r.eps.headline)} (${k(r.eps.afterJoin)})${(r.cores.others ?? 0) > 0.2 ? ' *' : ''}`;
  });
  const others = Math.max(0, ...Object.values(run.phases).map((p) => p.cores.others ?? 0));
  rows.push([
    m.date.slice(0, 19),
    m.revision,
    (m.label || '') +
      (m.profiled ? ' [profiled]' : '') +
      (m.tradeShare !== undefined && Math.abs(m.tradeShare - 1 / 3) > 1e-9 ? ` [trade share ${m.tradeShare}]` : '') +
      (m.padBytes ? ` [pad ${m.padBytes} B]` : ''),
    String(m.events),
    bytes(m.maxBytesPerPartition),
    String(m.concurrency),
    m.kafkajsLinearGrouping ? 'linear' : 'stock',
    ...cells,
    others.toFixed(2),
  ]);
}
const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i]!)).join('  '));
