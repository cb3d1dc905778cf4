/**
 * The fleet's Kubernetes manifests (infra/k8s): the committed files are what the topology renders to; every
 * overlay renders with kustomize and validates strictly against the Kubernetes API, KEDA's and prometheus-operator's
 * CRD schemas; a misspelled field is rejected with a message naming it; settings, probes, drain and canary hold.
 * No cluster: kustomize, kubeconform and the schemas come from the Go module proxy (infra/k8s/validate.ts).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { marketSignals } from '../../topologies/market-signals.ts';
import { renderFleet, SHUTDOWN_TIMEOUT_SECONDS, toYaml } from '../../infra/k8s/fleet.ts';
import {
  buildOverlay,
  ensureSchemas,
  k8sDir,
  kafkaScalerKeys,
  kubeconform,
  kustomize,
  listOverlays,
  validateManifests,
} from '../../infra/k8s/validate.ts';
import { ensureGoTool } from '../../infra/local/go-tools.ts';
import { configSchema, type SchemaNode } from '../../runtime/config/schema.ts';

// Parsed manifests are walked by path in the assertions; a failed lookup fails the test.
/* eslint-disable @typescript-eslint/no-explicit-any */
type Doc = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  spec?: Record<string, any>;
  data?: Record<string, string>;
  stringData?: Record<string, string>;
};

const docsOf = (yamlText: string): Doc[] =>
  parseAllDocuments(yamlText)
    .map((d) => d.toJS() as Doc)
    .filter((d) => d !== null);
const ofKind = (docs: Doc[], kind: string): Doc[] => docs.filter((d) => d.kind === kind);
const named = (docs: Doc[], kind: string, name: string): Doc => {
  const found = docs.find((d) => d.kind === kind && d.metadata.name === name);
  if (!found) throw new Error(`no ${kind}/${name}`);
  return found;
};
/**
 * The overlays meant for a Kubernetes cluster. Every overlay is validated; these are also checked for the
 * production shape (PDBs, ServiceMonitor, KEDA), which a local one (podman kube play knows neither) may strip.
 */
const CLUSTER_OVERLAYS = ['base', 'production', 'canary'];
const container = (deployment: Doc): Record<string, any> => deployment.spec!.template.spec.containers[0];
/* eslint-enable @typescript-eslint/no-explicit-any */

/** Settings that configure the local stack or the tests' clock: no pod needs them. */
const LOCAL_ONLY = /^(AS_STACK_|AS_CACHE_DIR$|AS_WALL_CLOCK_OFFSET_MS$)/;
/** Variables the pods carry that are not settings of runtime/config/schema.ts, each read by name elsewhere. */
const EXTRAS = new Set([
  'AS_FLEET_APP',
  'AS_INGEST_API_KEYS',
  'KEDA_KAFKA_SASL',
  'KEDA_KAFKA_TLS',
  'OTEL_TRACES_EXPORTER',
  'OTEL_EXPORTER_OTLP_ENDPOINT',
]);

/** Every setting's variable and whether it is secret, from the one config schema. */
function settingsOf(node: SchemaNode = configSchema as unknown as SchemaNode): Array<{ env: string; secret: boolean }> {
  return Object.values(node).flatMap((child) =>
    typeof (child as { parse?: unknown }).parse === 'function'
      ? [{ env: (child as { env: string }).env, secret: (child as { secret?: boolean }).secret === true }]
      : settingsOf(child as SchemaNode),
  );
}

function envFile(path: string): Map<string, string> {
  const entries = readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '' && !line.startsWith('#'))
    .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)] as const);
  return new Map(entries);
}

describe('Kubernetes manifests (infra/k8s)', () => {
  const topology = marketSignals();
  const rendered = new Map<string, string>();

  beforeAll(() => {
    // Once per clone: kustomize and kubeconform are built from the Go module proxy, the schemas made from modules.
    const log = (line: string): void => console.log(`k8s: ${line}`);
    ensureGoTool(kustomize, log);
    ensureGoTool(kubeconform, log);
    ensureSchemas(log);
    for (const overlay of listOverlays()) rendered.set(overlay, buildOverlay(overlay));
  }, 900_000);

  it('committed generated files equal a fresh render of topologies/market-signals.ts', () => {
    const files = renderFleet(topology);
    expect(files.size).toBeGreaterThan(0);
    for (const [path, content] of files)
      expect(readFileSync(join(k8sDir, path), 'utf8'), `${path}: run 'agent-streams k8s render'`).toBe(content);
    // Every generated workload is listed in the generated kustomization, so none is left out of a build.
    const listed = docsOf(files.get('base/generated/kustomization.yaml')!)[0] as unknown as { resources: string[] };
    expect(listed.resources.sort()).toEqual(
      [...files.keys()]
        .filter((p) => p.startsWith('base/generated/') && p.endsWith('.yaml') && !p.endsWith('kustomization.yaml'))
        .map((p) => p.slice('base/generated/'.length))
        .sort(),
    );
  });

  it('gives every processor a Deployment and a ScaledObject on its own consumer group, capped at its input partitions', () => {
    const docs = docsOf(rendered.get('base')!);
    const scaled = ofKind(docs, 'ScaledObject');
    for (const [processor, spec] of Object.entries(topology.processors)) {
      const name = `${topology.application}-${processor}`;
      const args: string[] = container(named(docs, 'Deployment', name)).args;
      expect(args.slice(0, 4)).toEqual(['run', 'topologies/market-signals.ts', '--processor', processor]);
      const so = named(docs, 'ScaledObject', name);
      expect(so.spec!.scaleTargetRef.name).toBe(name);
      expect(so.spec!.minReplicaCount).toBeGreaterThanOrEqual(1);
      const partitions = Math.min(...spec.inputs.map((t) => topology.topics[t]!.partitions));
      expect(so.spec!.maxReplicaCount).toBe(partitions);
      expect(
        so.spec!.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown.stabilizationWindowSeconds,
      ).toBeGreaterThan(0);
      const triggers = so.spec!.triggers as Array<{ type: string; metadata: Record<string, string> }>;
      expect(triggers.map((t) => t.metadata.topic).sort()).toEqual([...spec.inputs].sort());
      for (const t of triggers) {
        expect(t.type).toBe('kafka');
        expect(t.metadata.consumerGroup).toBe(topology.groupId(processor));
        expect(Number(t.metadata.lagThreshold)).toBeGreaterThan(0);
      }
    }
    // Plus the sink (a consumer group too); ingest has a fixed count.
    expect(scaled.map((s) => s.metadata.name).sort()).toEqual(
      [...Object.keys(topology.processors).map((p) => `market-${p}`), 'market-clickhouse-sink'].sort(),
    );
    expect(named(docs, 'ScaledObject', 'market-clickhouse-sink').spec!.triggers[0].metadata.consumerGroup).toBe(
      'market.clickhouse-sink',
    );
    expect(container(named(docs, 'Deployment', 'market-clickhouse-sink')).args).toEqual([
      'sink',
      'topologies/market-signals.ts',
    ]);
    expect(container(named(docs, 'Deployment', 'market-ingest')).args).toEqual(
      expect.arrayContaining(['ingest', '--topic', 'market.events', '--partitions', '6']),
    );
  });

  it('follows the topology: another application and partition count render other groups and caps', () => {
    const other = marketSignals({ application: 'desk', partitions: 3 });
    const docs = docsOf(
      [...renderFleet(other).entries()]
        .filter(([p]) => p.startsWith('base/generated/') && p.endsWith('.yaml'))
        .map(([, c]) => c)
        .join('\n'),
    );
    const router = named(docs, 'ScaledObject', 'desk-router');
    expect(router.spec!.maxReplicaCount).toBe(3);
    expect(router.spec!.triggers[0].metadata.consumerGroup).toBe('desk.router');
    expect(named(docs, 'ScaledObject', 'desk-alert-analyst').spec!.triggers[0].metadata.topic).toBe(
      'desk.portfolio-findings',
    );
  });

  it('renders and validates every overlay strictly', () => {
    expect([...rendered.keys()]).toEqual(expect.arrayContaining(CLUSTER_OVERLAYS));
    for (const [overlay, text] of rendered) {
      const result = validateManifests(text);
      console.log(
        `k8s: ${overlay}: ${result.resources} resources (${Object.entries(result.kinds)
          .map(([k, n]) => `${n} ${k}`)
          .join(', ')})`,
      );
      expect(result.problems, overlay).toEqual([]);
      expect(result.resources, overlay).toBeGreaterThan(0);
    }
  });

  it('probes, drains, limits and locks down every workload in every cluster overlay', () => {
    for (const overlay of CLUSTER_OVERLAYS) {
      const text = rendered.get(overlay)!;
      const docs = docsOf(text);
      const deployments = ofKind(docs, 'Deployment');
      const pdbs = ofKind(docs, 'PodDisruptionBudget');
      const services = ofKind(docs, 'Service');
      for (const d of deployments) {
        const where = `${overlay} ${d.metadata.name}`;
        const pod = d.spec!.template.spec;
        const c = container(d);
        expect(c.livenessProbe.httpGet, where).toEqual({ path: '/healthz', port: 'metrics' });
        expect(c.readinessProbe.httpGet, where).toEqual({ path: '/readyz', port: 'metrics' });
        expect(c.ports.find((p: { name: string }) => p.name === 'metrics').containerPort, where).toBe(9464);
        const timeout = c.args.includes('--shutdown-timeout')
          ? Number(c.args[c.args.indexOf('--shutdown-timeout') + 1])
          : SHUTDOWN_TIMEOUT_SECONDS;
        expect(pod.terminationGracePeriodSeconds, where).toBeGreaterThan(timeout);
        for (const kind of ['requests', 'limits'])
          for (const r of ['cpu', 'memory']) expect(c.resources[kind][r], `${where} ${kind}.${r}`).toBeDefined();
        expect(pod.securityContext.runAsNonRoot, where).toBe(true);
        expect(c.securityContext, where).toMatchObject({
          allowPrivilegeEscalation: false,
          readOnlyRootFilesystem: true,
          capabilities: { drop: ['ALL'] },
        });
        // A PodDisruptionBudget and a metrics Service select this Deployment's pods.
        const labels: Record<string, string> = d.spec!.template.metadata.labels;
        const selects = (selector: Record<string, string>): boolean =>
          Object.entries(selector).every(([k, v]) => labels[k] === v);
        expect(
          pdbs.some((p) => selects(p.spec!.selector.matchLabels)),
          `${where} PDB`,
        ).toBe(true);
        expect(
          services.some(
            (s) => selects(s.spec!.selector) && s.spec!.ports.some((p: { name: string }) => p.name === 'metrics'),
          ),
          `${where} Service`,
        ).toBe(true);
      }
      expect(ofKind(docs, 'ServiceMonitor').length, overlay).toBe(1);
    }
  });

  it('puts every setting in the ConfigMap or the Secret, secrets only in the Secret, and nothing unknown', () => {
    const config = envFile(join(k8sDir, 'base', 'config.env'));
    for (const [k, v] of envFile(join(k8sDir, 'base', 'generated', 'fleet.env'))) config.set(k, v);
    const secret = docsOf(readFileSync(join(k8sDir, 'base', 'secret.yaml'), 'utf8'))[0]!.stringData!;
    const settings = settingsOf();
    const secretNames = new Set(settings.filter((s) => s.secret && !LOCAL_ONLY.test(s.env)).map((s) => s.env));
    const known = new Set([...settings.map((s) => s.env), ...EXTRAS]);
    const missing = settings
      .filter((s) => !LOCAL_ONLY.test(s.env) && !config.has(s.env) && !(s.env in secret))
      .map((s) => s.env);
    expect(missing, 'settings in neither base/config.env nor base/secret.yaml').toEqual([]);
    expect(
      [...config.keys()].filter((k) => secretNames.has(k)),
      'secrets in the ConfigMap',
    ).toEqual([]);
    expect(
      [...secretNames].filter((k) => !(k in secret)),
      'secrets missing from the Secret',
    ).toEqual([]);
    expect(
      [...config.keys(), ...Object.keys(secret)].filter((k) => !known.has(k)),
      'unknown variables',
    ).toEqual([]);
    expect(config.get('AS_METRICS_HOST')).toBe('0.0.0.0');
  });

  it("keeps KEDA's spelling of the Kafka security settings in step with the members' in every overlay", () => {
    const sasl: Record<string, string> = {
      none: 'none',
      plain: 'plaintext',
      'scram-sha-256': 'scram_sha256',
      'scram-sha-512': 'scram_sha512',
    };
    for (const overlay of CLUSTER_OVERLAYS) {
      const text = rendered.get(overlay)!;
      const data = ofKind(docsOf(text), 'ConfigMap').find((c) =>
        c.metadata.name.startsWith('agent-streams-config'),
      )!.data!;
      expect(data.KEDA_KAFKA_SASL, overlay).toBe(sasl[data.AS_KAFKA_SASL_MECHANISM!]);
      expect(data.KEDA_KAFKA_TLS, overlay).toBe(data.AS_KAFKA_SSL === 'true' ? 'enable' : 'disable');
    }
    // Production never ships the placeholder Secret (it would blank the real one on apply).
    expect(ofKind(docsOf(rendered.get('production')!), 'Secret')).toEqual([]);
  });

  it('runs the canary as one router member of a new image in the same consumer group', () => {
    const docs = docsOf(rendered.get('canary')!);
    const stable = named(docs, 'Deployment', 'market-router');
    const canary = named(docs, 'Deployment', 'market-router-canary');
    expect(canary.spec!.replicas).toBe(1);
    expect(container(canary).args).toEqual(container(stable).args);
    const tag = (d: Doc): string => String(container(d).image).split(':').pop()!;
    expect(tag(canary)).not.toBe(tag(stable));
    expect(String(container(canary).image).split(':')[0]).toBe(String(container(stable).image).split(':')[0]);
    // Same settings (so the same group, market.router), its own selector, not scaled by the stable ScaledObject.
    expect(container(canary).envFrom).toEqual(container(stable).envFrom);
    expect(canary.spec!.selector.matchLabels).not.toEqual(stable.spec!.selector.matchLabels);
    expect(ofKind(docs, 'ScaledObject').some((s) => s.spec!.scaleTargetRef.name === 'market-router-canary')).toBe(
      false,
    );
    expect(named(docs, 'Service', 'market-router').spec!.selector).toEqual({
      'agent-streams.dev/application': 'market',
      'app.kubernetes.io/component': 'router',
    });
    expect(canary.spec!.template.metadata.labels['app.kubernetes.io/component']).toBe('router');
  });

  describe('rejects a misspelled field with a message naming it', () => {
    const mutate = (change: (docs: Doc[]) => void): string[] => {
      const docs = docsOf(rendered.get('base')!);
      change(docs);
      return validateManifests(toYaml(docs as unknown as Array<Record<string, unknown>>)).problems;
    };
    const rename = (object: Record<string, unknown>, from: string, to: string): void => {
      expect(object[from]).toBeDefined();
      object[to] = object[from];
      delete object[from];
    };

    it('replica: in a Deployment', () => {
      const problems = mutate((docs) => (named(docs, 'Deployment', 'market-router').spec!.replica = 2));
      expect(problems).toEqual([expect.stringMatching(/^Deployment\/market-router: \/spec: .*'replica'/)]);
    });

    it('lagTreshold in a KEDA Kafka trigger (a map of strings to the CRD schema, so checked against the scaler)', () => {
      const problems = mutate((docs) =>
        rename(
          named(docs, 'ScaledObject', 'market-volatility').spec!.triggers[0].metadata,
          'lagThreshold',
          'lagTreshold',
        ),
      );
      expect(problems).toEqual([
        expect.stringMatching(
          /^ScaledObject\/market-volatility: \/spec\/triggers\/0\/metadata: unknown Kafka scaler key "lagTreshold"/,
        ),
      ]);
    });

    it('a misspelled probe field and a misspelled probe', () => {
      const problems = mutate((docs) => {
        rename(
          container(named(docs, 'Deployment', 'market-news')).livenessProbe,
          'failureThreshold',
          'failureTreshold',
        );
        rename(container(named(docs, 'Deployment', 'market-ingest')), 'readinessProbe', 'readinesProbe');
      });
      expect(problems.sort()).toEqual([
        expect.stringMatching(/^Deployment\/market-ingest: \/spec\/template\/spec\/containers\/0: .*'readinesProbe'/),
        expect.stringMatching(
          /^Deployment\/market-news: \/spec\/template\/spec\/containers\/0\/livenessProbe: .*'failureTreshold'/,
        ),
      ]);
    });

    it('maxReplicas in a ScaledObject, a field of a ServiceMonitor, and a wrong type', () => {
      const problems = mutate((docs) => {
        rename(named(docs, 'ScaledObject', 'market-router').spec!, 'maxReplicaCount', 'maxReplicas');
        rename(named(docs, 'ServiceMonitor', 'agent-streams').spec!.endpoints[0], 'scrapeTimeout', 'scrapeTimout');
        container(named(docs, 'Deployment', 'market-filings')).readinessProbe.periodSeconds = 'five';
      });
      expect(problems.sort()).toEqual([
        expect.stringMatching(
          /^Deployment\/market-filings: \/spec\/template\/spec\/containers\/0\/readinessProbe\/periodSeconds: .*string.*integer/,
        ),
        expect.stringMatching(/^ScaledObject\/market-router: \/spec: .*'maxReplicas'/),
        expect.stringMatching(/^ServiceMonitor\/agent-streams: \/spec\/endpoints\/0: .*'scrapeTimout'/),
      ]);
    });

    it('an apiVersion no schema knows', () => {
      const problems = mutate((docs) => (named(docs, 'ScaledObject', 'market-news').apiVersion = 'keda.sh/v1alpa1'));
      expect(problems).toEqual([expect.stringMatching(/^ScaledObject\/market-news: .*could not find schema/)]);
    });

    it('still accepts the unchanged manifests after a round trip (the mutations are the only difference)', () => {
      expect(mutate(() => {})).toEqual([]);
    });
  });

  it("reads the Kafka scaler's keys from KEDA's source tags", () => {
    const source =
      'LagThreshold int64 `keda:"name=lagThreshold,order=triggerMetadata,default=10"`\nB []string `keda:"name=bootstrapServers,order=triggerMetadata;resolvedEnv"`\nP string `keda:"name=password,order=authParams,optional"`';
    expect(kafkaScalerKeys(source)).toEqual(['bootstrapServers', 'bootstrapServersFromEnv', 'lagThreshold']);
    expect(ensureSchemas().kafkaKeys).toEqual(
      expect.arrayContaining([
        'lagThreshold',
        'consumerGroup',
        'topic',
        'bootstrapServersFromEnv',
        'activationLagThreshold',
        'offsetResetPolicy',
      ]),
    );
  });
});
