/**
 * The Kafka Streams peer (bench/peers/kstreams/): built on demand with Maven from Maven Central, the repository in
 * the project's git-ignored .cache/m2 (as infra/local fetches Kafka), the jar and its dependencies in
 * .cache/bench-peers/kstreams/. Rebuilt when the pom or a source is newer than the jar.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync, utimesSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { startPeer, type PeerProcess } from './process.ts';

const root = resolve(import.meta.dirname, '..', '..');
const project = join(root, 'bench', 'peers', 'kstreams');
const out = join(root, '.cache', 'bench-peers', 'kstreams');
const jar = join(out, 'target', 'bench-kstreams-peer-0.1.0.jar');
const lib = join(out, 'lib');
export const KSTREAMS_VERSION = '4.4.0';

function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestSource(path) : statSync(path).mtimeMs);
  }
  return newest;
}

/** Builds the peer if needed; returns its classpath. */
export function ensureKStreamsPeer(log: (line: string) => void): string {
  const built = existsSync(jar) && existsSync(lib) ? statSync(jar).mtimeMs : 0;
  if (built < Math.max(statSync(join(project, 'pom.xml')).mtimeMs, newestSource(join(project, 'src')))) {
    log(`building the Kafka Streams peer with Maven (repository .cache/m2, output ${out})`);
    const result = spawnSync(
      'mvn',
      [
        '-B',
        '-q',
        `-Dmaven.repo.local=${join(root, '.cache', 'm2')}`,
        '-f',
        join(project, 'pom.xml'),
        `-DbuildDirectory=${join(out, 'target')}`,
        'package',
        'dependency:copy-dependencies',
        '-DincludeScope=runtime',
        `-DoutputDirectory=${lib}`,
      ],
      { cwd: root, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
    );
    if (result.status !== 0) {
      const output = `${result.stdout ?? ''}${result.stderr ?? ''}`.split('\n').slice(-30).join('\n');
      throw new Error(
        `building the Kafka Streams peer failed (mvn exit ${result.status ?? result.signal}); is Maven Central reachable?\n${output}`,
      );
    }
    // maven-jar-plugin leaves an up-to-date jar untouched: mark the build's time on it, or every run would rebuild.
    const now = new Date();
    utimesSync(jar, now, now);
  }
  return `${jar}:${join(lib, '*')}`;
}

export interface KStreamsOptions {
  mode: 'router' | 'windowed';
  bootstrap: string;
  application: string;
  input: string;
  stateDir: string;
  /** router: schema id → output topic. */
  routes?: Map<number, string>;
  /** windowed: output topic. */
  output?: string;
  /** Unset: Kafka Streams' default under exactly_once_v2 (100 ms). */
  commitIntervalMs?: number;
}

export function startKStreamsPeer(classpath: string, o: KStreamsOptions): PeerProcess {
  const args = [
    `bootstrap=${o.bootstrap}`,
    `application=${o.application}`,
    `input=${o.input}`,
    `state-dir=${o.stateDir}`,
  ];
  if (o.routes) args.push(`routes=${[...o.routes].map(([id, topic]) => `${id}:${topic}`).join(',')}`);
  if (o.output) args.push(`output=${o.output}`);
  if (o.commitIntervalMs !== undefined) args.push(`commit-interval-ms=${o.commitIntervalMs}`);
  // -Xmx bounded so that the peer cannot take the shared machine's memory; otherwise the JVM's defaults.
  return startPeer(
    'kafka streams peer',
    'java',
    ['-Xmx1g', '-cp', classpath, 'agentstreams.bench.PeerApp', o.mode, ...args],
    { cwd: root },
  );
}
