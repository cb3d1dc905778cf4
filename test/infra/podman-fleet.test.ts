/**
 * Run it for real: the fleet's Kubernetes manifests (overlays/podman over the base, kustomize) played with
 * `podman kube play`, the image built as CI builds it, host networking to the local stack. The golden scenario's
 * feed runs through it (test/fleet/fleet-run.ts, the LLM stand-in answering), and while the feed runs:
 *  1. the router is scaled from 1 to 3 members and back to 1;
 *  2. a canary joins: the canary Deployment (overlays/canary/router-canary.yaml, 1 replica) on a new image tag, in the
 *     router's consumer group.
 * The findings, alerts and digests in ClickHouse are then exactly the reference's (the test driver's, as for the
 * golden runs of member processes), every member drained on SIGTERM with exit code 0, and the scaled-out members and
 * the canary each routed records of the stream.
 *
 * Podman has no ReplicaSet (see infra/image/kube-play.ts): "scale to 3" plays the router's Deployment spec a second
 * time with 2 replicas (2 more pods from the same template, same consumer group), "back to 1" stops those 2 pods
 * with SIGTERM and the Deployment's grace period and removes them.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../runtime/config/index.ts';
import { marketSignals } from '../../topologies/market-signals.ts';
import { APP_IMAGE, buildImage } from '../../infra/image/build.ts';
import {
  PodmanFleet,
  renderPodmanFleet,
  type PlayedDeployment,
  type StoppedMember,
} from '../../infra/image/kube-play.ts';
import { podman } from '../../infra/image/podman.ts';
import { fleetResponder, startAnthropicFake, type AnthropicFake } from '../fakes/anthropic.ts';
import { expectedFleetOutput, lastHourBoundary, runFleet, type FleetLauncher } from '../fleet/fleet-run.ts';
import { fleetExpectations } from '../fleet/fleet-expect.ts';
import { config, kafkaClient, uniqueName } from '../support/stack.ts';

const CANARY_IMAGE = 'localhost/agent-streams:canary';
const log = (line: string): void => console.log(`podman-fleet: ${line}`);
const hour = lastHourBoundary();
const expected = expectedFleetOutput(hour);
const {
  expectedAlertIds,
  expectedDigestPortfolios,
  expectFindingsAsComputed,
  expectPlanted,
  expectAlertsAndDigests,
  expectAuditMatchesCalls,
} = fleetExpectations(hour, expected);

/** Environment names of the settings the schema marks secret: they go into the Secret, the rest into the ConfigMap. */
function secretEnvNames(node: unknown = configSchema, names = new Set<string>()): Set<string> {
  if (node && typeof node === 'object') {
    const setting = node as { env?: unknown; secret?: unknown };
    if (typeof setting.env === 'string') {
      if (setting.secret === true) names.add(setting.env);
    } else for (const child of Object.values(node)) secretEnvNames(child, names);
  }
  return names;
}

async function until<T>(
  what: string,
  timeoutMs: number,
  probe: () => Promise<T | undefined> | T | undefined,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`podman fleet: ${what} not within ${timeoutMs} ms`);
    await sleep(1_000);
  }
}

/** The members as podman pods from the manifests, with the router's scaling and the canary while the feed runs. */
class PodmanLauncher implements FleetLauncher {
  fleet: PodmanFleet | undefined;
  readonly runId = uniqueName('r')
    .slice(-6)
    .replace(/[^a-z0-9]/g, 'x');
  /** Processor (or sink) → its played Deployment. */
  readonly deployments = new Map<string, PlayedDeployment>();
  readonly stopped: Array<StoppedMember & { deployment: string }> = [];
  readonly timeline: string[] = [];
  /**
   * Router members that joined mid-stream (scaled out, canary) and were assigned a partition carrying records:
   * each must have routed records. (The feed's 12 symbols hash to 4 of the 6 partitions, so a member of three may
   * hold only empty ones.)
   */
  readonly mustRoute = new Set<string>();
  /** Container → the port its /metrics, /healthz and /readyz listen on (AS_METRICS_PORT=0: logged at start). */
  private readonly ports = new Map<string, number>();
  private application = '';
  private eventsTopic = '';
  private feedStarted = false;
  private feedEnded = false;
  private stopping = false;

  async start(env: Record<string, string>, names: string[]): Promise<void> {
    this.application = env.AS_FLEET_APP!;
    this.eventsTopic = env.AS_FLEET_EVENTS_TOPIC!;
    // The stack as this test reaches it, then the run's own settings (what fleet-run gives its member processes).
    const all: Record<string, string> = {
      AS_KAFKA_BROKERS: config.kafka.brokers.join(','),
      AS_REGISTRY_URL: config.registry.url,
      AS_CLICKHOUSE_URL: config.clickhouse.url,
      AS_CLICKHOUSE_USER: config.clickhouse.username,
      AS_CLICKHOUSE_PASSWORD: config.clickhouse.password,
      AS_REDIS_URL: config.redis.url,
      ...env,
    };
    const secretNames = secretEnvNames();
    const settings = Object.fromEntries(
      Object.entries(all).filter(([k]) => !secretNames.has(k) && k !== 'ANTHROPIC_API_KEY'),
    );
    const secrets = Object.fromEntries(
      Object.entries(all).filter(([k]) => secretNames.has(k) || k === 'ANTHROPIC_API_KEY'),
    );
    const manifests = renderPodmanFleet(
      { settings, secrets, canary: true, images: { 'agent-streams': APP_IMAGE, 'agent-streams-canary': CANARY_IMAGE } },
      log,
    );
    this.fleet = new PodmanFleet(manifests, this.runId, log);
    // Every processor and the sink is a Deployment of the manifests, found by its component label.
    const byComponent = new Map(
      manifests
        .filter((m) => m.kind === 'Deployment' && m.metadata.labels?.['agent-streams.dev/track'] !== 'canary')
        .map((m) => [m.metadata.labels?.['app.kubernetes.io/component'], m.metadata.name]),
    );
    const missing = names.filter((n) => !byComponent.has(n));
    if (missing.length > 0) throw new Error(`the manifests have no Deployment for ${missing.join(', ')}`);
    log(
      `not played: ${[...byComponent.entries()]
        .filter(([c]) => !names.includes(String(c)))
        .map(([, n]) => n)
        .join(', ')} (the feed produces to Kafka itself)`,
    );
    for (const name of names) this.deployments.set(name, this.fleet.play(byComponent.get(name)!));
    await Promise.all([...this.deployments.values()].map((d) => this.started(d)));
    this.mark('fleet started, every member ready');
  }

  async duringFeed({ done }: { done: Promise<unknown> }): Promise<void> {
    this.feedStarted = true;
    void done.then(() => {
      this.feedEnded = true;
      this.mark('feed produced');
    });
    const fleet = this.fleet!;
    const groupId = marketSignals({ application: this.application }).groupId('router');
    const admin = kafkaClient().admin();
    await admin.connect();
    try {
      const members = async (): Promise<number> => (await admin.describeGroups([groupId])).groups[0]!.members.length;
      const committed = async (): Promise<number> =>
        (await admin.fetchOffsets({ groupId, topics: [this.eventsTopic] }))
          .flatMap((t) => t.partitions)
          .reduce((n, p) => n + Math.max(0, Number(p.offset)), 0);
      /** Partitions of the input that have records (some get none: see mustRoute). */
      const withData = async (): Promise<Set<number>> =>
        new Set(
          (await admin.fetchTopicOffsets(this.eventsTopic)).filter((p) => Number(p.high) > 0).map((p) => p.partition),
        );
      /**
       * The group has `n` members and has committed `records` more since then, and each of `joined` holds partitions
       * and has consumed records itself (its own /metrics) when one of them carries data; or the feed is over (the
       * checks after the run then say what was missed).
       */
      const serve = async (
        n: number,
        records: number,
        what: string,
        joined: PlayedDeployment[] = [],
      ): Promise<void> => {
        await until(`${what}: ${n} members in ${groupId}`, 180_000, async () =>
          (await members()) === n ? true : undefined,
        );
        const from = await committed();
        const containers = joined.flatMap((d) => d.containers);
        await until(`${what}: ${records} more records routed`, 180_000, async () => {
          if (this.feedEnded) return true;
          if ((await committed()) - from < records) return undefined;
          const data = await withData();
          for (const container of containers) {
            const joins = this.fleet!.events(container).filter((e) => e.event === 'group.join');
            const partitions = (joins.at(-1)?.partitions ?? []) as number[];
            if (partitions.length === 0) return undefined;
            if (partitions.some((p) => data.has(p))) {
              this.mustRoute.add(container);
              if ((await this.consumed(container)) === 0) return undefined;
            }
          }
          return true;
        });
        const own = await Promise.all(
          containers.map(async (c) => `${c.replace(/-agent-streams$/, '')} ${await this.consumed(c)}`),
        );
        this.mark(
          `${what}: ${n} members routed ${(await committed()) - from} records${own.length > 0 ? ` (consumed by the new ones: ${own.join(', ')})` : ''}`,
        );
      };

      // 1 → 3: the router's Deployment spec played again with 2 replicas.
      const scaleOut = fleet.play('market-router', { as: `market-router-scale-${this.runId}`, replicas: 2 });
      await this.started(scaleOut);
      await serve(3, 500, 'router at 3', [scaleOut]);
      // 3 → 1: the two extra members get SIGTERM and leave.
      for (const member of fleet.stop(scaleOut)) this.stopped.push({ ...member, deployment: scaleOut.name });
      await serve(1, 300, 'router back at 1');

      // The canary: one router member of the new image tag in the same group.
      const canary = fleet.play('market-router-canary', { as: `market-router-canary-${this.runId}` });
      this.deployments.set('router-canary', canary);
      await this.started(canary);
      await serve(2, 500, 'router with the canary', [canary]);
    } finally {
      await admin.disconnect();
    }
  }

  crashed(): Array<{ processor: string; code: number | null }> {
    if (!this.fleet || this.stopping) return [];
    const out: Array<{ processor: string; code: number | null }> = [];
    for (const [processor, played] of this.deployments) {
      for (const container of played.containers) {
        const code = this.fleet.exitCode(container);
        if (code !== null) out.push({ processor, code });
      }
    }
    return out;
  }

  async stop(): Promise<Array<number | null>> {
    if (!this.fleet || this.stopping) return [];
    this.stopping = true;
    const codes: Array<number | null> = [];
    // Each Deployment stopped as the kubelet would (SIGTERM, the grace period), upstream first.
    for (const played of this.deployments.values()) {
      for (const member of this.fleet.stop(played)) {
        this.stopped.push({ ...member, deployment: played.name });
        codes.push(member.code);
      }
    }
    return codes;
  }

  /** Removes whatever is still there (also after a failure). */
  close(): void {
    this.fleet?.close();
  }

  /** Records the member has consumed, from its own /metrics (0 when it cannot be read). */
  private async consumed(container: string): Promise<number> {
    const response = await fetch(`http://127.0.0.1:${this.ports.get(container)}/metrics`).catch(() => undefined);
    if (response?.status !== 200) return 0;
    return (await response.text())
      .split('\n')
      .filter((line) => line.startsWith('agent_streams_records_consumed_total'))
      .reduce((n, line) => n + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
  }

  private mark(what: string): void {
    const line = `${what}${this.feedStarted && !this.feedEnded ? ' (feed still running)' : ''}`;
    this.timeline.push(line);
    log(line);
  }

  /** Every pod of a played Deployment has logged `started`, and its /readyz answers 200 (what the kubelet would ask). */
  private async started(played: PlayedDeployment): Promise<void> {
    const fleet = this.fleet!;
    for (const container of played.containers) {
      const port = await until(`${container} started`, 180_000, () => {
        const code = fleet.exitCode(container);
        if (code !== null)
          throw new Error(
            `${container} exited with ${code} before it started: ${podman(['logs', '--tail', '20', container]).slice(-2000)}`,
          );
        const started = fleet.events(container).find((e) => e.event === 'started');
        return started ? Number(started.metricsPort) : undefined;
      });
      this.ports.set(container, port);
      await until(`${container} ready on port ${port}`, 120_000, async () => {
        const response = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
        return response?.status === 200 ? true : undefined;
      });
    }
  }
}

describe('the fleet deployed from its Kubernetes manifests with podman kube play', () => {
  let fake: AnthropicFake;
  /** Closed after the test too: a test that timed out never reaches its own finally. */
  let launcher: PodmanLauncher | undefined;

  beforeAll(async () => {
    fake = await startAnthropicFake({ batchPollsToComplete: 1, responder: fleetResponder });
    // CI has built the image already (.ci/run): this finds every layer cached but the sources'. The canary is another
    // build of the same sources under a new tag and version label: a different image (its own id) in the same group.
    await buildImage({ log });
    await buildImage({ tag: CANARY_IMAGE, version: '0.0.0-canary', log });
  }, 900_000);

  afterAll(async () => {
    launcher?.close();
    await fake?.close();
  });

  it('runs the golden scenario while the router scales 1 → 3 → 1 and a canary of a new image tag joins its group; results are the reference, every member drains', async () => {
    launcher = new PodmanLauncher();
    const started = Date.now();
    try {
      const run = await runFleet({
        label: 'podman',
        hour,
        launcher: launcher,
        // The feed gets about three minutes: room for the scaling and the canary while it runs.
        startLeadMs: 4 * 60_000,
        anthropic: { baseUrl: fake.url },
        awaitAlerts: expectedAlertIds,
        awaitDigests: expectedDigestPortfolios,
        timeoutMs: 240_000,
        log,
      });
      log(
        `run of ${((Date.now() - started) / 1000).toFixed(0)} s: ${run.findings.length} findings, ${run.alerts.length} alerts, ${run.digests.length} digests, ${run.llmCalls.length} LLM calls; ${launcher.stopped.length} members stopped`,
      );
      for (const line of launcher.timeline) log(`  ${line}`);

      expect(run.crashed).toEqual([]);
      expectFindingsAsComputed(run);
      expectPlanted(run);
      expectAlertsAndDigests(run, 'llm');
      expectAuditMatchesCalls(run, fake);

      // Every member, the scaled-out ones and the canary included, drained on SIGTERM: `stopped` logged, exit code 0.
      const stats = (m: StoppedMember): { records?: number } | undefined =>
        m.events.find((e) => e.event === 'stopped') as { records?: number } | undefined;
      for (const member of launcher.stopped) {
        expect({ container: member.container, code: member.code, stopped: stats(member) !== undefined }).toEqual({
          container: member.container,
          code: 0,
          stopped: true,
        });
      }
      const routerMembers = launcher.stopped.filter((m) => /market-router/.test(m.deployment));
      expect(routerMembers.map((m) => m.deployment.replace(/-[a-z0-9]{6}$/, '')).sort()).toEqual([
        'market-router',
        'market-router-canary',
        'market-router-scale',
        'market-router-scale',
      ]);
      // The scaled-out members and the canary took partitions and routed records of this stream (each one that was
      // given a partition carrying records; the stable member always is).
      for (const member of routerMembers) {
        const joins = member.events.filter((e) => e.event === 'group.join');
        expect(joins.length, member.container).toBeGreaterThan(0);
        expect(
          joins.some((e) => (e.partitions as number[]).length > 0),
          member.container,
        ).toBe(true);
        if (launcher.mustRoute.has(member.container) || /^market-router-[a-z0-9]{6}$/.test(member.deployment)) {
          expect(stats(member)?.records, member.container).toBeGreaterThan(0);
        }
      }
      log(`router members that had to route records: ${[...launcher.mustRoute].join(', ')}`);
      expect(launcher.mustRoute.size).toBeGreaterThanOrEqual(2); // the canary (3 of 6 partitions) and one scaled-out member at least
      // The canary ran the new image, the others the stable one.
      for (const member of routerMembers)
        expect(member.image, member.container).toBe(
          member.deployment.startsWith('market-router-canary') ? CANARY_IMAGE : APP_IMAGE,
        );
      const imageId = (ref: string): string => podman(['image', 'inspect', '--format', '{{.Id}}', ref]).trim();
      expect(imageId(CANARY_IMAGE)).not.toBe(imageId(APP_IMAGE));
      expect(
        podman([
          'image',
          'inspect',
          '--format',
          '{{index .Config.Labels "org.opencontainers.image.version"}}',
          CANARY_IMAGE,
        ]).trim(),
      ).toBe('0.0.0-canary');
    } finally {
      launcher.close();
      log(
        `pods left by this run: ${podman(['pod', 'ps', '--filter', `name=${launcher.runId}`, '--format', '{{.Name}}']).trim() || 'none'}`,
      );
    }
  }, 480_000);
});
