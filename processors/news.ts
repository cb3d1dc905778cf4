/**
 * news: lexicon sentiment and materiality per story, near-duplicate headlines counted once, and bursts of
 * negative coverage per symbol. Headlines are untrusted text: they are only ever matched against word lists here,
 * so nothing in them can steer the severity beyond these rules.
 */
import { store, type ProcessorContext, type StreamRecord } from '../runtime/index.ts';
import type { NewsItem } from '../schemas/generated/types.ts';
import { finding, type FindingTopic, type Severity } from './finding.ts';

const negative = [
  'cut',
  'cuts',
  'slide',
  'slides',
  'probe',
  'recall',
  'recalls',
  'downgrade',
  'downgrades',
  'miss',
  'misses',
  'departs',
  'resigns',
  'cyberattack',
  'disrupted',
  'disruption',
  'short',
  'loses',
  'warns',
  'fraud',
  'lawsuit',
  'bankruptcy',
  'default',
  'weak',
  'plunge',
  'plunges',
  'halt',
  'investigation',
];
const positive = [
  'beats',
  'beat',
  'raises',
  'wins',
  'upgrade',
  'upgrades',
  'buyback',
  'approval',
  'record',
  'surge',
  'surges',
  'strong',
];
const material = [
  'guidance',
  'probe',
  'regulator',
  'accounting',
  'recall',
  'bankruptcy',
  'fraud',
  'investigation',
  'cyberattack',
  'customer',
  'contract',
  'chief',
  'ceo',
  'cfo',
  'estimates',
  'outlook',
  'acquisition',
  'merger',
];

export interface NewsOptions {
  output: FindingTopic;
  /** Window in which stories are compared for duplicates and counted for a burst. */
  windowMs: number;
  /** Distinct negative stories in the window for a burst: medium, high, critical. */
  burst: { medium: number; high: number; critical: number };
  /** Word-set similarity above which two headlines are the same story. */
  duplicateSimilarity: number;
}

export const defaultNewsOptions: Omit<NewsOptions, 'output'> = {
  windowMs: 10 * 60_000,
  burst: { medium: 3, high: 4, critical: 6 },
  duplicateSimilarity: 0.7,
};

interface NewsState {
  /** Recent stories: [eventTime, story id, sorted word set, sentiment]. */
  recent: Array<[number, string, string[], number]>;
  /** Severity rank of the burst already reported, and the start of that burst. */
  burst?: [number, number];
}

/** Per symbol: recent stories and the burst reported. */
export const newsStore = store<NewsState>('news');

export function words(text: string): string[] {
  return [...new Set(text.toLowerCase().match(/[a-z0-9']+/g) ?? [])].sort();
}

export function sentiment(tokens: string[]): number {
  return tokens.reduce((score, w) => score + (positive.includes(w) ? 1 : 0) - (negative.includes(w) ? 1 : 0), 0);
}

function similarity(a: string[], b: string[]): number {
  const setB = new Set(b);
  const shared = a.filter((w) => setB.has(w)).length;
  return shared / Math.max(1, new Set([...a, ...b]).size);
}

const ranks: Severity[] = ['info', 'low', 'medium', 'high', 'critical'];

/** The source is the feed's text: a summary quotes a bounded, one-line piece of it (the prompt fences it anyway). */
const MAX_SOURCE_CHARS = 80;
function quotedSource(source: string): string {
  const line = source.replace(/\s+/g, ' ').trim();
  return line.length > MAX_SOURCE_CHARS ? `${line.slice(0, MAX_SOURCE_CHARS)}…` : line;
}

export function newsAgent(options: NewsOptions) {
  return (record: StreamRecord<NewsItem>, ctx: ProcessorContext): void => {
    const story = record.value;
    const symbol = record.key ?? story.symbols[0] ?? '';
    const store = ctx.store(newsStore);
    const state = store.get() ?? { recent: [] };
    const t = record.timestamp;
    state.recent = state.recent.filter(([time]) => time > t - options.windowMs);
    const tokens = words(story.headline);
    const duplicate = state.recent.some(
      ([, id, other]) => id === story.id || similarity(tokens, other) >= options.duplicateSimilarity,
    );
    if (duplicate) {
      store.set(state);
      return;
    }
    const score = sentiment(tokens);
    state.recent.push([t, story.id, tokens, score]);
    const isMaterial = tokens.some((w) => material.includes(w));
    const negatives = state.recent.filter(([, , , s]) => s < 0);
    const count = negatives.length;
    const severity: Severity | undefined =
      count >= options.burst.critical
        ? 'critical'
        : count >= options.burst.high
          ? 'high'
          : count >= options.burst.medium
            ? 'medium'
            : undefined;
    if (severity && score < 0) {
      const rank = ranks.indexOf(severity);
      const episode = state.burst && state.burst[1] > t - options.windowMs ? state.burst : undefined;
      if (!episode || rank > episode[0]) {
        const start = episode?.[1] ?? negatives[0]![0];
        state.burst = [rank, start];
        ctx.forward(options.output, {
          key: symbol,
          value: finding(
            {
              agent: 'news',
              rule: 'negative-burst',
              symbol,
              severity,
              windowStart: start,
              windowEnd: t,
              eventTime: t,
              evidence: { stories: count, sentiment: score },
              summary: `${count} negative stories on ${symbol} within ${options.windowMs / 60_000} minutes`,
            },
            record,
          ),
        });
      }
    } else if (isMaterial && score < 0 && count === 1) {
      ctx.forward(options.output, {
        key: symbol,
        value: finding(
          {
            agent: 'news',
            rule: 'material-negative',
            symbol,
            severity: 'low',
            windowStart: t,
            windowEnd: t,
            eventTime: t,
            evidence: { sentiment: score },
            summary: `Material negative story on ${symbol} (${quotedSource(story.source)})`,
          },
          record,
        ),
      });
    }
    store.set(state);
  };
}
