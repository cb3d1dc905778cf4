/**
 * Summarises V8 CPU profiles (.cpuprofile, from `node --cpu-prof` or `bench/runtime.ts --profile DIR`):
 * self time by function (name + file:line), self time by area (package or runtime file), and inclusive time of
 * the project's own functions.
 *
 * tsx compiles each .ts file to a single line, so V8 reports every project function at line 1. Where tsx's
 * transform cache (`$TMPDIR/tsx-<uid>`) still holds the compiled file, its source map turns the column back into
 * the .ts line (the cache entry whose code best matches the profiled function names is used).
 *
 *   npx tsx bench/profile-summary.ts FILE.cpuprofile [...] [--top 25] [--json]
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface Summary {
  file: string;
  totalMs: number;
  idleMs: number;
  busyMs: number;
  bySelf: Array<{ fn: string; ms: number; pct: number }>;
  byArea: Array<{ area: string; ms: number; pct: number }>;
  projectInclusive: Array<{ fn: string; ms: number; pct: number }>;
}

const { values: opts, positionals: files } = parseArgs({
  allowPositionals: true,
  options: {
    top: { type: 'string', default: '25' },
    json: { type: 'boolean', default: false },
    'tsx-cache': { type: 'string' },
  },
});

// ---------------------------------------------------------------------------------------------------------------
// Source maps of tsx's compiled files

interface CacheEntry {
  code: string;
  /** Generated column → original 0-based line, for the first generated line (tsx emits one line). */
  columns: Int32Array;
  lines: Int32Array;
  mtime: number;
}

const BASE64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** Decodes the first line of a source map's `mappings` into (generated column, original line) pairs. */
function decodeFirstLine(mappings: string): { columns: Int32Array; lines: Int32Array } {
  const columns: number[] = [];
  const lines: number[] = [];
  let genCol = 0;
  let srcLine = 0;
  let i = 0;
  const values: number[] = [];
  const end = mappings.indexOf(';') < 0 ? mappings.length : mappings.indexOf(';');
  while (i < end) {
    values.length = 0;
    while (i < end && mappings[i] !== ',') {
      let value = 0;
      let shift = 0;
      let digit: number;
      do {
        digit = BASE64.indexOf(mappings[i++]!);
        value += (digit & 31) << shift;
        shift += 5;
      } while (digit & 32);
      values.push(value & 1 ? -(value >>> 1) : value >>> 1);
    }
    i += 1;
    genCol += values[0] ?? 0;
    if (values.length >= 4) {
      srcLine += values[2]!;
      columns.push(genCol);
      lines.push(srcLine);
    }
  }
  return { columns: Int32Array.from(columns), lines: Int32Array.from(lines) };
}

let cacheIndex: Map<string, CacheEntry[]> | undefined;

function tsxCache(): Map<string, CacheEntry[]> {
  if (cacheIndex) return cacheIndex;
  cacheIndex = new Map();
  const uid = process.getuid?.() ?? 0;
  const dirs = opts['tsx-cache'] ? [opts['tsx-cache']] : [join(tmpdir(), `tsx-${uid}`), join(tmpdir(), 'tsx')];
  for (const dir of dirs) {
    if (!existsSync(dir)) continue;
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      try {
        const parsed = JSON.parse(readFileSync(path, 'utf8')) as {
          code?: string;
          map?: { sources?: string[]; mappings?: string };
        };
        const source = parsed.map?.sources?.[0];
        if (!parsed.code || !source || !parsed.map?.mappings) continue;
        const list = cacheIndex.get(source) ?? [];
        list.push({ code: parsed.code, ...decodeFirstLine(parsed.map.mappings), mtime: statSync(path).mtimeMs });
        cacheIndex.set(source, list);
      } catch {
        // not a cache entry
      }
    }
  }
  return cacheIndex;
}

const chosen = new Map<string, CacheEntry | null>();

/** The cache entry of `path` whose code has the profiled named functions at the profiled columns. */
function entryFor(path: string, frames: CallFrame[]): CacheEntry | undefined {
  if (chosen.has(path)) return chosen.get(path) ?? undefined;
  const candidates = tsxCache().get(path) ?? [];
  let best: CacheEntry | undefined;
  let bestScore = -1;
  for (const c of candidates) {
    let score = 0;
    for (const f of frames) {
      if (!f.functionName || f.functionName.startsWith('(')) continue;
      const name = f.functionName.split('.').pop()!;
      if (
        c.code.slice(Math.max(0, f.columnNumber - name.length - 12), f.columnNumber + name.length + 12).includes(name)
      )
        score += 1;
    }
    if (score > bestScore || (score === bestScore && best !== undefined && c.mtime > best.mtime)) {
      best = c;
      bestScore = score;
    }
  }
  chosen.set(path, best ?? null);
  return best;
}

function originalLine(entry: CacheEntry, column: number): number | undefined {
  // Last mapping at or before the column.
  let lo = 0;
  let hi = entry.columns.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (entry.columns[mid]! <= column) {
      found = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found < 0 ? undefined : entry.lines[found]! + 1;
}

function shortUrl(url: string): string {
  if (url === '') return '';
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) return url.slice(nm + '/node_modules/'.length);
  const main = url.indexOf('/work/main/');
  if (main >= 0) return url.slice(main + '/work/main/'.length);
  return url.replace(/^file:\/\//, '');
}

/** Where a frame's time goes: a package, a project folder/file, Node internals, or V8's pseudo-frames. */
function areaOf(frame: CallFrame): string {
  const url = frame.url;
  if (url === '')
    return frame.functionName.startsWith('(') ? frame.functionName : `(native) ${frame.functionName || 'anonymous'}`;
  if (url.startsWith('node:')) return 'node internals';
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  return shortUrl(url);
}

const isProject = (frame: CallFrame): boolean =>
  frame.url.includes('/work/main/') && !frame.url.includes('/node_modules/');

let lineResolver: (frame: CallFrame) => number = (frame) => frame.lineNumber + 1;

function keyOf(frame: CallFrame): string {
  const name = frame.functionName || '(anonymous)';
  const url = shortUrl(frame.url);
  return url ? `${name}  ${url}:${lineResolver(frame)}` : name;
}

function sorted(map: Map<string, number>, total: number, top: number): Array<{ key: string; ms: number; pct: number }> {
  return [...map]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([key, us]) => ({ key, ms: Math.round(us / 100) / 10, pct: Math.round((us / total) * 1000) / 10 }));
}

export function summarise(file: string, top: number): Summary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const framesByUrl = new Map<string, CallFrame[]>();
  for (const n of profile.nodes) {
    if (!n.callFrame.url.startsWith('file://') || !n.callFrame.url.endsWith('.ts') || n.callFrame.lineNumber !== 0)
      continue;
    const list = framesByUrl.get(n.callFrame.url) ?? [];
    list.push(n.callFrame);
    framesByUrl.set(n.callFrame.url, list);
  }
  chosen.clear();
  lineResolver = (frame) => {
    const frames = framesByUrl.get(frame.url);
    if (!frames) return frame.lineNumber + 1;
    const entry = entryFor(frame.url.slice('file://'.length), frames);
    return (entry && originalLine(entry, frame.columnNumber)) ?? frame.lineNumber + 1;
  };
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  // Self time per node from the sample timeline (more exact than hitCount × interval).
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i += 1) {
    const id = profile.samples[i]!;
    const dt = profile.timeDeltas[i + 1] ?? 0;
    selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, dt));
  }
  let total = 0;
  let idle = 0;
  const bySelf = new Map<string, number>();
  const byArea = new Map<string, number>();
  const inclusive = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const node = byId.get(id)!;
    total += us;
    if (node.callFrame.functionName === '(idle)') idle += us;
    const k = keyOf(node.callFrame);
    bySelf.set(k, (bySelf.get(k) ?? 0) + us);
    const area = areaOf(node.callFrame);
    byArea.set(area, (byArea.get(area) ?? 0) + us);
    // Inclusive time of project functions: count the sample once per distinct project frame on its stack.
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)!.callFrame;
      if (!isProject(frame)) continue;
      const key = keyOf(frame);
      if (seen.has(key)) continue;
      seen.add(key);
      inclusive.set(key, (inclusive.get(key) ?? 0) + us);
    }
  }
  const busy = total - idle;
  return {
    file,
    totalMs: Math.round(total / 1000),
    idleMs: Math.round(idle / 1000),
    busyMs: Math.round(busy / 1000),
    bySelf: sorted(bySelf, total, top).map(({ key, ms, pct }) => ({ fn: key, ms, pct })),
    byArea: sorted(byArea, total, top).map(({ key, ms, pct }) => ({ area: key, ms, pct })),
    projectInclusive: sorted(inclusive, total, top).map(({ key, ms, pct }) => ({ fn: key, ms, pct })),
  };
}

function print(s: Summary): void {
  console.log(`\n== ${s.file}`);
  console.log(
    `sampled ${s.totalMs} ms: busy ${s.busyMs} ms, idle ${s.idleMs} ms (${Math.round((s.idleMs / Math.max(1, s.totalMs)) * 100)}% idle)`,
  );
  console.log('\n-- self time by area (% of sampled time)');
  for (const a of s.byArea) console.log(`${String(a.ms).padStart(9)} ms ${String(a.pct).padStart(5)}%  ${a.area}`);
  console.log('\n-- self time by function');
  for (const f of s.bySelf) console.log(`${String(f.ms).padStart(9)} ms ${String(f.pct).padStart(5)}%  ${f.fn}`);
  console.log('\n-- inclusive time of project functions');
  for (const f of s.projectInclusive)
    console.log(`${String(f.ms).padStart(9)} ms ${String(f.pct).padStart(5)}%  ${f.fn}`);
}

if (files.length === 0) {
  console.error('usage: npx tsx bench/profile-summary.ts FILE.cpuprofile [...] [--top N] [--json]');
  process.exit(2);
}
const top = Number(opts.top) || 25;
const summaries = files.map((f) => summarise(f, top));
if (opts.json) console.log(JSON.stringify(summaries, null, 2));
else summaries.forEach(print);
