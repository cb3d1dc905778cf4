/**
 * The fleet's per-workload Kubernetes resources, derived from a topology so that consumer groups, input topics,
 * partition counts (KEDA's `maxReplicaCount`) and the list of processors can never drift from it. `agent-streams
 * k8s render` writes them to infra/k8s/base/generated/; a test checks that the committed files equal a fresh render.
 *
 * Each processor gets a Deployment, a Service (metrics), a PodDisruptionBudget and a KEDA ScaledObject on its own
 * consumer group's lag; the ClickHouse sink gets the same (it is a consumer group too); the HTTP ingest gateway
 * gets a Deployment with a fixed replica count, a Service and a PodDisruptionBudget. Everything shared (settings,
 * secrets, the ServiceMonitor, the image) lives in hand-written files beside generated/.
 */
import { stringify } from 'yaml';
import type { ProcessorSpec, Topology } from '../../runtime/topology/topology.ts';

/** The image name every Deployment uses; overlays set the real registry and tag with kustomize's `images:`. */
export const IMAGE = 'agent-streams';
/** Port of /metrics, /healthz and /readyz in every container (AS_METRICS_PORT in the ConfigMap). */
export const METRICS_PORT = 9464;
/** The ingest gateway's HTTP port inside the pod. */
export const INGEST_PORT = 8080;
/** `run --shutdown-timeout` and the sink's and ingest's own stop deadlines (30 s each). */
export const SHUTDOWN_TIMEOUT_SECONDS = 30;
/**
 * Kubernetes sends SIGKILL this long after SIGTERM. It must exceed the member's own deadline, so that a member that
 * is finishing its batch, committing and leaving the group is never killed half-way (a kill costs a rebalance
 * after the session timeout and a re-run of the uncommitted batch, which exactly-once makes safe but slow).
 */
export const TERMINATION_GRACE_SECONDS = SHUTDOWN_TIMEOUT_SECONDS + 15;
/** The user of the image (`node`, uid 1000, as in the official Node images and infra/image/base.ts). */
export const RUN_AS_USER = 1000;
/** Names of the ConfigMap and Secret every container takes its environment from (see base/kustomization.yaml). */
export const CONFIG_MAP = 'agent-streams-config';
export const SECRET = 'agent-streams-secrets';
/** KEDA's credentials for the brokers (base/keda-trigger-auth.yaml), shared by every Kafka trigger. */
export const TRIGGER_AUTHENTICATION = 'agent-streams-kafka';
/** Scale-down waits this long at the lower lag before removing a member: every change of members is a rebalance. */
export const SCALE_DOWN_STABILIZATION_SECONDS = 300;
/** The topology file inside the image, relative to its working directory. */
export const TOPOLOGY_FILE = 'topologies/market-signals.ts';

interface Resources {
  requests: { cpu: string; memory: string };
  limits: { cpu: string; memory: string };
  /** V8's old-space limit, below the memory limit so Node collects garbage before the kernel OOM-kills it. */
  heapMb: number;
}

/** How a workload is sized and scaled; chosen by what its processor does, not by its name. */
interface Profile {
  resources: Resources;
  /** KEDA's `lagThreshold`: target lag per member. Cheap records tolerate a deep backlog; LLM calls do not. */
  lagThreshold: number;
}

const profiles = {
  /** Routes by record type without decoding whole payloads: cheap per record, high throughput. */
  router: {
    resources: { requests: { cpu: '250m', memory: '256Mi' }, limits: { cpu: '1', memory: '512Mi' }, heapMb: 384 },
    lagThreshold: 5000,
  },
  /** Rule agents and windows: Redis round trips per batch. */
  state: {
    resources: { requests: { cpu: '250m', memory: '256Mi' }, limits: { cpu: '1', memory: '512Mi' }, heapMb: 384 },
    lagThreshold: 1000,
  },
  /** Agents that call the LLM per record: seconds per record, so a few records of lag already justify a member. */
  llm: {
    resources: { requests: { cpu: '100m', memory: '256Mi' }, limits: { cpu: '500m', memory: '512Mi' }, heapMb: 384 },
    lagThreshold: 20,
  },
  /** The ClickHouse sink buffers thousands of rows per insert (≥ 100k rows/s per instance). */
  sink: {
    resources: { requests: { cpu: '500m', memory: '512Mi' }, limits: { cpu: '2', memory: '1Gi' }, heapMb: 768 },
    lagThreshold: 20000,
  },
} as const satisfies Record<string, Profile>;

/** The ingest gateway is no consumer group: sized like a router, scaled by replica count. */
const ingestResources: Resources = {
  requests: { cpu: '250m', memory: '256Mi' },
  limits: { cpu: '1', memory: '512Mi' },
  heapMb: 384,
};

function profileOf(spec: ProcessorSpec): Profile {
  if (spec.kind === 'router') return profiles.router;
  if (spec.kind === 'process' && spec.enrich) return profiles.llm;
  return profiles.state;
}

/** What one consumer group reads, for KEDA: the group, its input topics and how many members can have work. */
export interface GroupScaling {
  group: string;
  topics: string[];
  /** Partitions of the inputs (co-partitioned, so one count): more members than this would sit idle. */
  partitions: number;
  lagThreshold: number;
}

export interface Workload {
  /** Kubernetes name: `<application>-<processor>`. */
  name: string;
  /** The processor's name in the topology, or `clickhouse-sink` / `ingest`. */
  component: string;
  args: string[];
  resources: Resources;
  /** Consumer groups are scaled by KEDA; the ingest gateway has a fixed count. */
  scaling?: GroupScaling;
  replicas?: number;
  httpPort?: number;
}

const dns1123 = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** The workloads of a topology: one per processor, the ClickHouse sink and the ingest gateway. */
export function fleetWorkloads(topology: Topology, topologyFile = TOPOLOGY_FILE): Workload[] {
  const app = topology.application;
  const partitionsOf = (topics: string[], what: string): number => {
    const counts = [...new Set(topics.map((t) => topology.topics[t]?.partitions))];
    if (counts.length !== 1 || counts[0] === undefined)
      throw new Error(
        `${what} reads ${topics.join(', ')}: expected declared topics with one partition count, got ${counts.join(', ')}`,
      );
    return counts[0];
  };
  const workloads: Workload[] = Object.entries(topology.processors).map(([processor, spec]) => {
    const profile = profileOf(spec);
    return {
      name: `${app}-${processor}`,
      component: processor,
      args: ['run', topologyFile, '--processor', processor, '--shutdown-timeout', String(SHUTDOWN_TIMEOUT_SECONDS)],
      resources: profile.resources,
      scaling: {
        group: topology.groupId(processor),
        topics: [...spec.inputs],
        partitions: partitionsOf(spec.inputs, `processor "${processor}"`),
        lagThreshold: profile.lagThreshold,
      },
    };
  });
  // The sink's group name is the one cli/commands/sink.ts gives runClickHouseSink.
  const sinkTopics = [...(topology.sink?.clickhouse?.topics ?? [])];
  workloads.push({
    name: `${app}-clickhouse-sink`,
    component: 'clickhouse-sink',
    args: ['sink', topologyFile],
    resources: profiles.sink.resources,
    scaling: {
      group: `${app}.clickhouse-sink`,
      topics: sinkTopics,
      partitions: Math.max(...sinkTopics.map((t) => topology.topics[t]?.partitions ?? 1)),
      lagThreshold: profiles.sink.lagThreshold,
    },
  });
  // Ingest writes the topic the router reads; naming it here keeps both ends on one topic and partition count.
  const router = Object.values(topology.processors).find((p) => p.kind === 'router');
  const eventsTopic = router?.inputs[0];
  workloads.push({
    name: `${app}-ingest`,
    component: 'ingest',
    args: [
      'ingest',
      '--host',
      '0.0.0.0',
      '--port',
      String(INGEST_PORT),
      ...(eventsTopic
        ? ['--topic', eventsTopic, '--partitions', String(topology.topics[eventsTopic]?.partitions ?? 1)]
        : []),
    ],
    resources: ingestResources,
    replicas: 2,
    httpPort: INGEST_PORT,
  });
  for (const w of workloads) {
    if (w.name.length > 63 || !dns1123.test(w.name))
      throw new Error(
        `workload name "${w.name}" is not a Kubernetes DNS label (lower-case letters, digits, '-', at most 63): rename the processor or the application`,
      );
  }
  return workloads;
}

type Manifest = Record<string, unknown>;

function labels(app: string, w: Workload): Record<string, string> {
  return {
    'app.kubernetes.io/name': w.name,
    'app.kubernetes.io/component': w.component,
    'agent-streams.dev/application': app,
  };
}

/** The pod selector of a Deployment; the canary's Deployment has its own, so the two never claim each other's pods. */
function selector(w: Workload): Record<string, string> {
  return { 'app.kubernetes.io/name': w.name };
}

export function deployment(
  app: string,
  w: Workload,
  overrides: { name?: string; track?: string; image?: string; replicas?: number } = {},
): Manifest {
  const name = overrides.name ?? w.name;
  const podLabels = {
    ...labels(app, w),
    'app.kubernetes.io/name': name,
    'agent-streams.dev/track': overrides.track ?? 'stable',
  };
  const probe = (path: string, periodSeconds: number, failureThreshold: number): Manifest => ({
    httpGet: { path, port: 'metrics' },
    periodSeconds,
    timeoutSeconds: 2,
    failureThreshold,
  });
  const replicas = overrides.replicas ?? w.replicas;
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, labels: podLabels },
    spec: {
      // Consumer groups leave `replicas` to KEDA: an apply must not reset the count it chose.
      ...(replicas !== undefined ? { replicas } : {}),
      revisionHistoryLimit: 5,
      selector: { matchLabels: { 'app.kubernetes.io/name': name } },
      // One new member at a time and none removed before its replacement is ready: each step is one rebalance.
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
      template: {
        metadata: { labels: podLabels },
        spec: {
          terminationGracePeriodSeconds: TERMINATION_GRACE_SECONDS,
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          securityContext: {
            runAsNonRoot: true,
            runAsUser: RUN_AS_USER,
            runAsGroup: RUN_AS_USER,
            fsGroup: RUN_AS_USER,
            seccompProfile: { type: 'RuntimeDefault' },
          },
          containers: [
            {
              name: 'agent-streams',
              image: overrides.image ?? IMAGE,
              imagePullPolicy: 'IfNotPresent',
              // The image's entrypoint is the agent-streams CLI behind an init that forwards SIGTERM.
              args: w.args,
              ports: [
                { name: 'metrics', containerPort: METRICS_PORT, protocol: 'TCP' },
                ...(w.httpPort !== undefined ? [{ name: 'http', containerPort: w.httpPort, protocol: 'TCP' }] : []),
              ],
              envFrom: [{ configMapRef: { name: CONFIG_MAP } }, { secretRef: { name: SECRET } }],
              env: [
                { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
                { name: 'NODE_OPTIONS', value: `--max-old-space-size=${w.resources.heapMb}` },
              ],
              resources: { requests: { ...w.resources.requests }, limits: { ...w.resources.limits } },
              // Start-up joins the group and may restore state; liveness waits for it instead of killing a slow start.
              startupProbe: probe('/healthz', 5, 60),
              livenessProbe: probe('/healthz', 10, 3),
              readinessProbe: probe('/readyz', 5, 2),
              // The gateway keeps accepting while the Service drops the pod from its endpoints, then drains.
              ...(w.httpPort !== undefined ? { lifecycle: { preStop: { sleep: { seconds: 5 } } } } : {}),
              securityContext: {
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                runAsNonRoot: true,
                privileged: false,
                capabilities: { drop: ['ALL'] },
              },
              // tsx compiles TypeScript into the temp dir; everything else of the root filesystem stays read-only.
              volumeMounts: [{ name: 'tmp', mountPath: '/tmp' }],
            },
          ],
          volumes: [{ name: 'tmp', emptyDir: { sizeLimit: '64Mi' } }],
        },
      },
    },
  };
}

function service(app: string, w: Workload): Manifest {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: w.name, labels: { ...labels(app, w), 'agent-streams.dev/metrics': 'true' } },
    spec: {
      type: 'ClusterIP',
      // Selects the canary's pods too (same component), so its metrics are scraped and its gateway serves.
      selector: { 'agent-streams.dev/application': app, 'app.kubernetes.io/component': w.component },
      ports: [
        { name: 'metrics', port: METRICS_PORT, targetPort: 'metrics', protocol: 'TCP' },
        ...(w.httpPort !== undefined ? [{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' }] : []),
      ],
    },
  };
}

export function podDisruptionBudget(app: string, w: Workload, name = w.name): Manifest {
  return {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: { name, labels: { ...labels(app, w), 'app.kubernetes.io/name': name } },
    // maxUnavailable, not minAvailable: with KEDA at one member, minAvailable 1 would block every node drain.
    spec: { maxUnavailable: 1, selector: { matchLabels: selector({ ...w, name }) } },
  };
}

function scaledObject(app: string, w: Workload, scaling: GroupScaling): Manifest {
  return {
    apiVersion: 'keda.sh/v1alpha1',
    kind: 'ScaledObject',
    metadata: { name: w.name, labels: labels(app, w) },
    spec: {
      scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: w.name },
      // A warm pool: never scale a member group to zero, so the first record after a quiet hour waits for no pod.
      minReplicaCount: 1,
      maxReplicaCount: scaling.partitions,
      pollingInterval: 15,
      cooldownPeriod: 300,
      advanced: {
        horizontalPodAutoscalerConfig: {
          behavior: {
            scaleDown: {
              stabilizationWindowSeconds: SCALE_DOWN_STABILIZATION_SECONDS,
              policies: [{ type: 'Pods', value: 1, periodSeconds: 60 }],
            },
            scaleUp: { stabilizationWindowSeconds: 0, policies: [{ type: 'Pods', value: 2, periodSeconds: 30 }] },
          },
        },
      },
      // One trigger per input topic (co-partitioned inputs all feed the same members).
      triggers: scaling.topics.map((topic) => ({
        type: 'kafka',
        // SASL/TLS for KEDA's own connection: base/keda-trigger-auth.yaml, from the members' settings.
        authenticationRef: { name: TRIGGER_AUTHENTICATION },
        metadata: {
          // Resolved from the target container's environment: the same AS_KAFKA_BROKERS the members use.
          bootstrapServersFromEnv: 'AS_KAFKA_BROKERS',
          consumerGroup: scaling.group,
          topic,
          lagThreshold: String(scaling.lagThreshold),
          activationLagThreshold: '0',
          // A group that has committed nothing yet counts its whole backlog (members start from the earliest offset).
          offsetResetPolicy: 'earliest',
        },
      })),
    },
  };
}

/** The resources of one workload, in apply order. */
export function workloadManifests(topology: Topology, w: Workload): Manifest[] {
  const app = topology.application;
  return [
    deployment(app, w),
    service(app, w),
    podDisruptionBudget(app, w),
    ...(w.scaling ? [scaledObject(app, w, w.scaling)] : []),
  ];
}

const header = (what: string): string =>
  `# Generated by \`agent-streams k8s render\` from ${TOPOLOGY_FILE} (${what}). Do not edit: change the topology or\n# infra/k8s/fleet.ts and render again; test/infra/k8s.test.ts fails when this file and a fresh render differ.\n`;

export function toYaml(manifests: Manifest[]): string {
  return manifests.map((m) => `---\n${stringify(m, { lineWidth: 0, aliasDuplicateObjects: false })}`).join('');
}

/**
 * Every generated file, path relative to infra/k8s/, with its content: one file per workload, the generated
 * kustomization listing them, the fleet's own settings, and the canary's second router Deployment.
 */
export function renderFleet(topology: Topology, topologyFile = TOPOLOGY_FILE): Map<string, string> {
  const files = new Map<string, string>();
  const workloads = fleetWorkloads(topology, topologyFile);
  for (const w of workloads)
    files.set(`base/generated/${w.component}.yaml`, header(w.component) + toYaml(workloadManifests(topology, w)));
  files.set(
    'base/generated/kustomization.yaml',
    header('the list of workloads') +
      stringify({
        apiVersion: 'kustomize.config.k8s.io/v1beta1',
        kind: 'Kustomization',
        resources: workloads.map((w) => `${w.component}.yaml`),
      }),
  );
  // The application decides every group id and topic name: members and KEDA must agree on it.
  files.set(
    'base/generated/fleet.env',
    header('settings the topology decides') + `AS_FLEET_APP=${topology.application}\nAS_METRICS_PORT=${METRICS_PORT}\n`,
  );
  const router = workloads.find((w) => topology.processors[w.component]?.kind === 'router');
  if (router) {
    const app = topology.application;
    const name = `${router.name}-canary`;
    files.set(
      'overlays/canary/router-canary.yaml',
      header('the canary: one router member of the new image in the same consumer group') +
        toYaml([
          deployment(app, router, { name, track: 'canary', image: `${IMAGE}-canary`, replicas: 1 }),
          podDisruptionBudget(app, router, name),
        ]),
    );
  }
  return files;
}
