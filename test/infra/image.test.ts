/**
 * The container image, built with podman as CI builds it (infra/image/), and a member in it on the real stack:
 * - what the image is: non-root, production dependencies only, tini as PID 1, metrics on all interfaces, labelled;
 * - `podman stop` of a member while it routes a live feed: SIGTERM reaches node through tini, the member finishes
 *   its batch, commits and leaves the consumer group (the group is empty at once, not after a session timeout),
 *   and exits 0 well inside the stop timeout (no SIGKILL).
 */
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runFeed } from '../../connectors/synthetic-feed.ts';
import { ensureTopics } from '../../runtime/engine/topics.ts';
import { registryClient } from '../../runtime/serde/avro.ts';
import { loadSchemas, registerSchemas } from '../../runtime/serde/schemas.ts';
import { marketSignals } from '../../topologies/market-signals.ts';
import { projectRoot } from '../../cli/paths.ts';
import { debianSource } from '../../infra/image/base.ts';
import { APP_IMAGE, buildImage } from '../../infra/image/build.ts';
import { podman } from '../../infra/image/podman.ts';
import { config, kafkaClient, uniqueName } from '../support/stack.ts';

const log = (line: string): void => console.log(`image: ${line}`);
const containers: string[] = [];

/** The container's JSON log lines (stdout and stderr). */
function containerEvents(name: string): Array<Record<string, unknown>> {
  return podman(['logs', name])
    .split('\n')
    .flatMap((line) => {
      try {
        return [JSON.parse(line) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
}

describe('the container image', () => {
  beforeAll(async () => {
    // CI built it already (.ci/run): this finds every layer cached but the sources'.
    const result = await buildImage({ log });
    log(
      `${result.image}: ${(result.sizeBytes / 1e6).toFixed(0)} MB; base ${result.baseSeconds.toFixed(1)} s, image ${result.appSeconds.toFixed(1)} s`,
    );
  }, 900_000);

  afterAll(() => {
    for (const name of containers) {
      try {
        podman(['rm', '--force', '--time', '0', name]);
      } catch {
        // already gone
      }
    }
  });

  it('the base comes from the Debian mirror apt uses (deb822 or one-line sources), not from the security or updates suites', () => {
    const dir = mkdtempSync(join(tmpdir(), 'apt-'));
    mkdirSync(join(dir, 'sources.list.d'));
    writeFileSync(
      join(dir, 'sources.list.d', 'debian.sources'),
      'Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\nComponents: main\n\nTypes: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n',
    );
    expect(debianSource(dir)).toEqual({ mirror: 'http://mirror.example/debian', suite: 'bookworm' });
    const listDir = mkdtempSync(join(tmpdir(), 'apt-'));
    writeFileSync(
      join(listDir, 'sources.list'),
      '# comment\ndeb [arch=amd64] http://snapshot.example/archive/debian/20250520T000000Z trixie main contrib\n',
    );
    expect(debianSource(listDir)).toEqual({
      mirror: 'http://snapshot.example/archive/debian/20250520T000000Z',
      suite: 'trixie',
    });
  });

  it('runs as uid 1000 with production dependencies only, tini as PID 1, metrics on 0.0.0.0, OCI labels', () => {
    const inspect = JSON.parse(podman(['image', 'inspect', APP_IMAGE]))[0] as {
      Config: { User: string; Env: string[]; Entrypoint: string[]; Labels: Record<string, string> };
    };
    expect(inspect.Config.User).toBe('1000:1000');
    expect(inspect.Config.Env).toContain('AS_METRICS_HOST=0.0.0.0');
    expect(inspect.Config.Entrypoint.slice(0, 2)).toEqual(['tini', '--']);
    for (const label of ['title', 'description', 'licenses', 'version', 'revision', 'created', 'base.name']) {
      expect(inspect.Config.Labels[`org.opencontainers.image.${label}`], label).toMatch(/\S/);
    }
    expect(inspect.Config.Labels['org.opencontainers.image.revision']).toMatch(/^[0-9a-f]{40}$/);
    // Dev dependencies and the tests stay out; tsx (the CLI runs TypeScript through it) is in.
    const listing = podman([
      'run',
      '--rm',
      '--entrypoint',
      'sh',
      APP_IMAGE,
      '-c',
      'id -u; for p in tsx kafkajs vitest typescript chdb testcontainers; do test -e node_modules/$p/package.json && echo "has $p"; done; ls /app',
    ]);
    expect(listing).toMatch(/^1000\n/);
    expect(listing).toContain('has tsx');
    expect(listing).toContain('has kafkajs');
    for (const dev of ['vitest', 'typescript', 'chdb', 'testcontainers']) expect(listing).not.toContain(`has ${dev}`);
    expect(listing).not.toMatch(/^test$/m);
    expect(listing).toMatch(/^topologies$/m);
  }, 120_000);

  it('podman stop drains a member routing a live feed: SIGTERM through tini, batch finished and committed, group left, exit 0 inside the timeout', async () => {
    const application = uniqueName('image-drain').replaceAll('_', '-');
    const eventsTopic = `${application}.market.events`;
    const topology = marketSignals({ application, eventsTopic });
    const schemas = loadSchemas(join(projectRoot, 'schemas'));
    await registerSchemas(config, registryClient(config), schemas);
    const admin = kafkaClient().admin();
    await admin.connect();
    try {
      await ensureTopics(admin, topology, 'router');
      const name = `as-test-drain-${application.slice(-6)}`;
      containers.push(name);
      // AS_METRICS_PORT=0: on the host network a fixed port may be taken by a member of another test.
      podman([
        'run',
        '--detach',
        '--name',
        name,
        '--network',
        'host',
        '--env',
        `AS_FLEET_APP=${application}`,
        '--env',
        `AS_FLEET_EVENTS_TOPIC=${eventsTopic}`,
        '--env',
        'AS_METRICS_PORT=0',
        APP_IMAGE,
        'run',
        'topologies/market-signals.ts',
        '--processor',
        'router',
        '--shutdown-timeout',
        '30',
      ]);
      const deadline = Date.now() + 120_000;
      while (!containerEvents(name).some((e) => e.event === 'started')) {
        if (Date.now() > deadline) throw new Error(`member did not start: ${podman(['logs', name]).slice(-2000)}`);
        await sleep(500);
      }
      expect(podman(['exec', name, 'cat', '/proc/1/cmdline']).split('\0')[0]).toBe('tini');

      // A live feed, stopped (abandoned) only after the member has gone: the member stops mid-stream.
      const feed = runFeed(config, {
        seed: 3,
        symbols: 12,
        rate: 400,
        duration: '20s',
        start: Date.now(),
        topic: eventsTopic,
        pace: true,
      });
      const groupId = topology.groupId('router');
      const committed = async (): Promise<number> =>
        (await admin.fetchOffsets({ groupId, topics: [eventsTopic] }))
          .flatMap((t) => t.partitions)
          .reduce((n, p) => n + Math.max(0, Number(p.offset)), 0);
      while ((await committed()) < 1000) {
        if (Date.now() > deadline) throw new Error('the member committed nothing while the feed ran');
        await sleep(500);
      }

      const stopStarted = Date.now();
      podman(['stop', '--time', '30', name], { timeoutMs: 60_000 });
      const stopSeconds = (Date.now() - stopStarted) / 1000;
      const state = JSON.parse(podman(['inspect', '--format', '{{json .State}}', name])) as { ExitCode: number };
      const events = containerEvents(name);
      const stopping = events.find((e) => e.event === 'stopping');
      const stopped = events.find((e) => e.event === 'stopped') as { records?: number; batches?: number } | undefined;
      const group = (await admin.describeGroups([groupId])).groups[0]!;
      log(
        `member stopped in ${stopSeconds.toFixed(1)} s with exit code ${state.ExitCode} after ${stopped?.batches} batches / ${stopped?.records} records; group ${group.state} with ${group.members.length} members`,
      );

      expect(stopping?.signal).toBe('SIGTERM'); // the signal reached node, through tini
      expect(stopped).toBeDefined(); // handle.stop() finished: batch done, committed, consumer disconnected
      expect(stopped!.records).toBeGreaterThan(0);
      expect(events.some((e) => e.event === 'shutdown deadline passed; exiting')).toBe(false);
      expect(state.ExitCode).toBe(0); // not 137: podman did not have to SIGKILL it
      expect(stopSeconds).toBeLessThan(30);
      // Left the group on the way out: no member waits out a session timeout, the partitions are free at once.
      expect(group.state).toBe('Empty');
      expect(group.members).toEqual([]);
      expect(await committed()).toBeGreaterThan(0);
      await feed;
    } finally {
      await admin.disconnect();
    }
  }, 240_000);
});
