/**
 * The fleet's Kubernetes manifests on podman (`podman kube play`), on one machine beside the local stack: the
 * `podman` overlay (infra/k8s/overlays/podman) rendered with kustomize, plus a run's own settings, then played one
 * Deployment at a time so each can be scaled and stopped on its own.
 *
 * What podman 4.3 (Debian bookworm) cannot take from the YAML, and what is done instead:
 * - a Secret in the YAML becomes a podman secret holding the YAML text, which `envFrom.secretRef` then fails to
 *   read ("not valid JSON"): the Secret is created here with `podman secret create`, as the JSON map podman reads;
 * - there is no ReplicaSet behind a played Deployment: `replicas: N` starts pods `<name>-pod-0..N-1` once, and
 *   nothing changes their number later. Scaling up is playing the same Deployment spec again under another name
 *   (its pods are members of the same consumer group, from the same template); scaling down is stopping those pods
 *   with SIGTERM and the Deployment's grace, then `podman kube down`;
 * - `terminationGracePeriodSeconds` is not applied (podman stops with 10 s): stops here pass it as `--time`;
 * - an emptyDir becomes a named volume shared by every pod naming it (`tmp` for all twelve Deployments): each
 *   played Deployment gets its own (its replicas still share it);
 * - Services, PodDisruptionBudgets, KEDA objects and ServiceMonitors have no podman equivalent and are not played.
 * Names get the run's id, so that two runs on one machine never share a pod or a secret.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { parseAllDocuments, stringify } from 'yaml';
import { AgentStreamsError, ErrorCode } from '../../runtime/errors.ts';
import { ensureGoTool } from '../local/go-tools.ts';
import { kustomize } from '../k8s/validate.ts';
import { podman } from './podman.ts';

const projectRoot = resolve(import.meta.dirname, '..', '..');
const k8sDir = join(projectRoot, 'infra', 'k8s');
export const PODMAN_OVERLAY = join(k8sDir, 'overlays', 'podman');
export const CANARY_DEPLOYMENT_FILE = join(k8sDir, 'overlays', 'canary', 'router-canary.yaml');

export type Manifest = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  [key: string]: unknown;
};
type Container = {
  name: string;
  image: string;
  envFrom?: Array<{ configMapRef?: { name: string }; secretRef?: { name: string } }>;
  volumeMounts?: Array<{ name: string; mountPath: string }>;
};
export type DeploymentManifest = Manifest & {
  spec: {
    replicas?: number;
    template: {
      metadata: { labels: Record<string, string> };
      spec: { terminationGracePeriodSeconds?: number; containers: Container[]; volumes?: Array<{ name: string }> };
    };
  };
};

export interface RenderOptions {
  /** Settings merged into the ConfigMap (the run's own: application, database, clock, LLM URL…). */
  settings?: Record<string, string>;
  /** Settings merged into the Secret. */
  secrets?: Record<string, string>;
  /** Also render the canary Deployment (overlays/canary/router-canary.yaml), patched for podman like the rest. */
  canary?: boolean;
  /** Image references, e.g. { 'agent-streams-canary': 'localhost/agent-streams:canary' }; the overlay's by default. */
  images?: Record<string, string>;
}

/**
 * kustomize over the podman overlay with the run's settings. The run's kustomization lives in a temporary folder of
 * .cache/ and names the overlay (and the canary file and podman patch) by path from there, hence LoadRestrictionsNone.
 */
export function renderPodmanFleet(options: RenderOptions = {}, log: (line: string) => void = () => {}): Manifest[] {
  const bin = ensureGoTool(kustomize, log);
  mkdirSync(join(projectRoot, '.cache'), { recursive: true });
  const dir = mkdtempSync(join(projectRoot, '.cache', 'podman-render-'));
  // kustomize takes no absolute path as a resource.
  const from = (path: string): string => relative(dir, path);
  try {
    const literal = (entries: Record<string, string>): string[] => Object.entries(entries).map(([k, v]) => `${k}=${v}`);
    const kustomization = {
      apiVersion: 'kustomize.config.k8s.io/v1beta1',
      kind: 'Kustomization',
      resources: [from(PODMAN_OVERLAY), ...(options.canary ? [from(CANARY_DEPLOYMENT_FILE)] : [])],
      ...(options.settings && Object.keys(options.settings).length > 0
        ? {
            configMapGenerator: [
              { name: 'agent-streams-config', behavior: 'merge', literals: literal(options.settings) },
            ],
          }
        : {}),
      images: Object.entries(options.images ?? {}).map(([name, ref]) => {
        const at = ref.lastIndexOf(':');
        return { name, newName: ref.slice(0, at), newTag: ref.slice(at + 1) };
      }),
      patches: [
        // The canary comes from outside the overlay: the same podman patch (a no-op on the others).
        ...(options.canary
          ? [{ path: from(join(PODMAN_OVERLAY, 'on-podman.yaml')), target: { kind: 'Deployment' } }]
          : []),
        ...(options.secrets && Object.keys(options.secrets).length > 0
          ? [
              {
                patch: JSON.stringify({
                  apiVersion: 'v1',
                  kind: 'Secret',
                  metadata: { name: 'agent-streams-secrets' },
                  stringData: options.secrets,
                }),
              },
            ]
          : []),
      ],
    };
    writeFileSync(join(dir, 'kustomization.yaml'), stringify(kustomization));
    const text = execFileSync(bin, ['build', '--load-restrictor', 'LoadRestrictionsNone', dir], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      maxBuffer: 64 * 1024 * 1024,
    });
    return parseAllDocuments(text)
      .map((d) => d.toJSON() as Manifest)
      .filter((m) => m !== null);
  } catch (error) {
    const stderr = String((error as { stderr?: string }).stderr ?? '').trim();
    throw new AgentStreamsError(
      ErrorCode.USAGE,
      `kustomize build of the podman overlay failed: ${stderr || String(error)}`,
      { cause: error },
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface PlayedDeployment {
  /** The name it was played under (the Deployment's own plus the run id, or a scale-out copy's). */
  name: string;
  deployment: DeploymentManifest;
  file: string;
  pods: string[];
  /** One per pod: the pod's container running the member. */
  containers: string[];
}

export interface StoppedMember {
  container: string;
  code: number | null;
  image: string;
  events: Array<Record<string, unknown>>;
}

/** One run's fleet on podman: the rendered manifests, the secret made from them, and every Deployment it played. */
export class PodmanFleet {
  readonly played: PlayedDeployment[] = [];
  private readonly dir = mkdtempSync(join(tmpdir(), 'as-podman-play-'));
  private readonly secretName: string;
  private readonly configMap: Manifest;

  constructor(
    readonly manifests: Manifest[],
    readonly runId: string,
    private readonly log: (line: string) => void = () => {},
  ) {
    const configMap = manifests.find((m) => m.kind === 'ConfigMap');
    const secret = manifests.find((m) => m.kind === 'Secret') as
      (Manifest & { stringData?: Record<string, string>; data?: Record<string, string> }) | undefined;
    if (!configMap || !secret)
      throw new AgentStreamsError(ErrorCode.USAGE, 'the rendered fleet has no ConfigMap or no Secret');
    this.configMap = configMap;
    this.secretName = `${secret.metadata.name}-${runId}`;
    // podman reads a secretRef as a JSON map of name to base64 bytes.
    const data: Record<string, string> = { ...(secret.data ?? {}) };
    for (const [key, value] of Object.entries(secret.stringData ?? {}))
      data[key] = Buffer.from(value).toString('base64');
    const file = join(this.dir, 'secret.json');
    writeFileSync(file, JSON.stringify(data), { mode: 0o600 });
    podman(['secret', 'create', this.secretName, file]);
    rmSync(file);
  }

  deployment(name: string): DeploymentManifest {
    const found = this.manifests.find((m) => m.kind === 'Deployment' && m.metadata.name === name);
    if (!found) throw new AgentStreamsError(ErrorCode.USAGE, `no Deployment ${name} in the rendered fleet`);
    return structuredClone(found) as DeploymentManifest;
  }

  deploymentNames(): string[] {
    return this.manifests.filter((m) => m.kind === 'Deployment').map((m) => m.metadata.name);
  }

  /**
   * `podman kube play` of one Deployment (with the ConfigMap it reads), under `as` (default: its name plus the run
   * id) with `replicas` pods (default: its own count, 1 when it has none, as KEDA's minReplicaCount).
   */
  play(name: string, options: { as?: string; replicas?: number } = {}): PlayedDeployment {
    const deployment = this.deployment(name);
    const playedName = options.as ?? `${name}-${this.runId}`;
    deployment.metadata.name = playedName;
    deployment.spec.replicas = options.replicas ?? deployment.spec.replicas ?? 1;
    // podman makes an emptyDir a named volume, shared by every pod that names it: one per played Deployment.
    const pod = deployment.spec.template.spec;
    for (const volume of pod.volumes ?? []) volume.name = `${volume.name}-${playedName}`;
    for (const container of pod.containers) {
      for (const from of container.envFrom ?? []) if (from.secretRef) from.secretRef.name = this.secretName;
      for (const mount of container.volumeMounts ?? []) mount.name = `${mount.name}-${playedName}`;
    }
    const file = join(this.dir, `${playedName}.yaml`);
    writeFileSync(file, [this.configMap, deployment].map((m) => stringify(m)).join('---\n'));
    this.log(
      `podman kube play ${playedName} (${deployment.spec.replicas} × ${deployment.spec.template.spec.containers[0]!.image})`,
    );
    podman(['kube', 'play', file], { timeoutMs: 180_000 });
    const pods = Array.from({ length: deployment.spec.replicas }, (_, i) => `${playedName}-pod-${i}`);
    const containerName = deployment.spec.template.spec.containers[0]!.name;
    const played: PlayedDeployment = {
      name: playedName,
      deployment,
      file,
      pods,
      containers: pods.map((pod) => `${pod}-${containerName}`),
    };
    this.played.push(played);
    return played;
  }

  /**
   * Stops a played Deployment's pods as the kubelet would (SIGTERM, then SIGKILL after the grace period), then
   * removes them (`podman kube down`); returns each member's exit code and its log, read before the pods go.
   */
  stop(played: PlayedDeployment): StoppedMember[] {
    if (!this.played.includes(played)) return [];
    const grace = played.deployment.spec.template.spec.terminationGracePeriodSeconds ?? 30;
    this.log(`stopping ${played.name} (${played.pods.length} pods, grace ${grace} s)`);
    podman(['pod', 'stop', '--time', String(grace), ...played.pods], { timeoutMs: (grace + 30) * 1000 });
    const stopped = played.containers.map((container) => ({
      container,
      code: this.exitCode(container),
      image: podman(['inspect', '--format', '{{.ImageName}}', container]).trim(),
      events: this.events(container),
    }));
    this.down(played);
    return stopped;
  }

  exitCode(container: string): number | null {
    try {
      const state = JSON.parse(podman(['inspect', '--format', '{{json .State}}', container])) as {
        Running: boolean;
        ExitCode: number;
      };
      return state.Running ? null : state.ExitCode;
    } catch {
      return null;
    }
  }

  /** The member's JSON log lines so far. */
  events(container: string): Array<Record<string, unknown>> {
    let text: string;
    try {
      text = podman(['logs', container]);
    } catch {
      return [];
    }
    return text.split('\n').flatMap((line) => {
      try {
        const event = JSON.parse(line) as unknown;
        return event !== null && typeof event === 'object' ? [event as Record<string, unknown>] : [];
      } catch {
        return [];
      }
    });
  }

  /** `podman kube down` of one played Deployment; never throws (clean-up). */
  down(played: PlayedDeployment): void {
    const at = this.played.indexOf(played);
    if (at >= 0) this.played.splice(at, 1);
    try {
      podman(['kube', 'down', played.file], { timeoutMs: 120_000 });
    } catch (error) {
      this.log(`kube down ${played.name}: ${String(error)}`);
      for (const pod of played.pods) {
        try {
          podman(['pod', 'rm', '--force', pod]);
        } catch {
          // not there
        }
      }
    }
  }

  /** Removes every pod still played and the secret; never throws (clean-up, also after a failure). */
  close(): void {
    for (const played of [...this.played].reverse()) this.down(played);
    try {
      podman(['secret', 'rm', this.secretName]);
    } catch {
      // already removed
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
