/**
 * Rendering and strict validation of the fleet's manifests, with nothing but the Go module proxy:
 * - kustomize (sigs.k8s.io/kustomize/kustomize/v5) renders an overlay;
 * - kubeconform (github.com/yannh/kubeconform) validates each resource against JSON schemas made here from
 *   the Kubernetes OpenAPI spec (k8s.io/kubernetes module: api/openapi-spec/swagger.json), KEDA's CRDs
 *   (github.com/kedacore/keda/v2: config/crd/bases) and prometheus-operator's CRDs (example/prometheus-operator-crd).
 *   The schemas are strict: every object that declares its properties gets `additionalProperties: false`, so a
 *   misspelled field (`replica:`, `livenesProbe:`) is an error naming it, not a field the API server drops;
 * - KEDA reads a trigger's `metadata` as a map of strings and ignores keys it does not know, so a misspelled
 *   `lagTreshold` would silently mean the default threshold. The Kafka scaler's own keys are read from its source
 *   in the same KEDA module, and any other key is an error.
 * Tools and schemas are built once per clone into .cache/ (git-ignored).
 */
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { AgentStreamsError, ErrorCode } from '../../runtime/errors.ts';
import { ensureGoTool, goCacheEnv, type GoTool } from '../local/go-tools.ts';

const projectRoot = resolve(import.meta.dirname, '..', '..');
export const k8sDir = resolve(import.meta.dirname);

export const kustomize: GoTool = {
  name: 'kustomize',
  pkg: 'sigs.k8s.io/kustomize/kustomize/v5',
  version: 'v5.8.2',
  why: 'renders infra/k8s overlays',
};
export const kubeconform: GoTool = {
  name: 'kubeconform',
  pkg: 'github.com/yannh/kubeconform/cmd/kubeconform',
  version: 'v0.7.0',
  why: 'validates manifests against API schemas',
};

/** Where the schemas come from: module and version on the Go module proxy. */
export const schemaSources = {
  kubernetes: { module: 'k8s.io/kubernetes', version: 'v1.34.4' },
  keda: { module: 'github.com/kedacore/keda/v2', version: 'v2.21.0' },
  // The newest version of the repository's root module the proxy serves (later ones are refused).
  prometheusOperator: { module: 'github.com/prometheus-operator/prometheus-operator', version: 'v0.85.0' },
} as const;

/** `base` or an overlay's name (a folder of overlays/), or a path to a kustomization folder. */
export function overlayDir(overlay: string): string {
  if (overlay === 'base') return join(k8sDir, 'base');
  const named = join(k8sDir, 'overlays', overlay);
  if (existsSync(join(named, 'kustomization.yaml'))) return named;
  if (existsSync(join(resolve(overlay), 'kustomization.yaml'))) return resolve(overlay);
  throw new AgentStreamsError(
    ErrorCode.USAGE,
    `no kustomization for "${overlay}": name one of ${listOverlays().join(', ')}, or a folder holding a kustomization.yaml`,
  );
}

/** `base` and every folder of overlays/ holding a kustomization.yaml. */
export function listOverlays(): string[] {
  const dir = join(k8sDir, 'overlays');
  const names = existsSync(dir)
    ? readdirSync(dir)
        .filter((name) => existsSync(join(dir, name, 'kustomization.yaml')))
        .sort()
    : [];
  return ['base', ...names];
}

export function buildOverlay(overlay: string, log: (line: string) => void = () => {}): string {
  const dir = overlayDir(overlay);
  const bin = ensureGoTool(kustomize, log);
  try {
    return execFileSync(bin, ['build', dir], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      maxBuffer: 64 * 1024 * 1024,
    });
  } catch (error) {
    const stderr = String((error as { stderr?: string }).stderr ?? '').trim();
    throw new AgentStreamsError(ErrorCode.USAGE, `kustomize build ${overlay} failed: ${stderr}`, { cause: error });
  }
}

type Schema = Record<string, unknown>;

function goModuleDir(module: string, version: string): string {
  try {
    const out = execFileSync('go', ['mod', 'download', '-json', `${module}@${version}`], {
      env: goCacheEnv(join(projectRoot, '.cache')),
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      cwd: tmpdir(),
    });
    const info = JSON.parse(out) as { Dir?: string; Error?: string };
    if (!info.Dir) throw new Error(info.Error ?? 'no Dir');
    return info.Dir;
  } catch (error) {
    const detail =
      String((error as { stdout?: string }).stdout ?? '') + String((error as { stderr?: string }).stderr ?? '') ||
      (error as Error).message;
    throw new AgentStreamsError(
      ErrorCode.STACK_TOOL_MISSING,
      `go mod download ${module}@${version} failed (${detail.trim().slice(0, 400)}); check that the Go module proxy is reachable and retry.`,
      {
        cause: error,
        retriable: true,
      },
    );
  }
}

const QUANTITY = 'io.k8s.apimachinery.pkg.api.resource.Quantity';
const OBJECT_META = 'io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta';

/** openapi2jsonschema's strict conversion: closed objects, int-or-string and quantities as the API accepts them. */
function strictify(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(strictify);
  if (node === null || typeof node !== 'object') return node;
  const schema = node as Schema;
  if (
    schema.format === 'int-or-string' ||
    (schema['x-kubernetes-int-or-string'] === true && !schema.anyOf && !schema.oneOf)
  ) {
    const { type: _type, format: _format, ...rest } = schema;
    return { ...rest, oneOf: [{ type: 'string' }, { type: 'integer' }] };
  }
  const out: Schema = {};
  for (const [key, value] of Object.entries(schema)) {
    // Property names are data, not keywords: a field called "format" or "type" must not be rewritten.
    out[key] =
      key === 'properties' || key === 'definitions'
        ? Object.fromEntries(Object.entries(value as Schema).map(([k, v]) => [k, strictify(v)]))
        : strictify(value);
  }
  if (
    out.properties !== undefined &&
    out.additionalProperties === undefined &&
    out['x-kubernetes-preserve-unknown-fields'] !== true
  )
    out.additionalProperties = false;
  return out;
}

/** The definitions a schema reaches through `$ref`, so each kind's file stands alone. */
function closure(root: unknown, definitions: Record<string, Schema>): Record<string, Schema> {
  const found: Record<string, Schema> = {};
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(visit);
    if (node === null || typeof node !== 'object') return;
    for (const [key, value] of Object.entries(node as Schema)) {
      if (key === '$ref' && typeof value === 'string' && value.startsWith('#/definitions/')) {
        const name = value.slice('#/definitions/'.length);
        if (found[name] === undefined && definitions[name] !== undefined) {
          found[name] = definitions[name];
          visit(definitions[name]);
        }
      } else visit(value);
    }
  };
  visit(root);
  return found;
}

function fileName(kind: string, group: string, version: string): string {
  // kubeconform's {{ .ResourceKind }}{{ .KindSuffix }}: the kind, the group's first label, the version.
  return `${kind.toLowerCase()}${group === '' ? '' : `-${group.split('.')[0]!.toLowerCase()}`}-${version.toLowerCase()}.json`;
}

interface Gvk {
  group: string;
  version: string;
  kind: string;
}

function writeKubernetesSchemas(dir: string, swaggerPath: string): Record<string, Schema> {
  const swagger = JSON.parse(readFileSync(swaggerPath, 'utf8')) as { definitions: Record<string, Schema> };
  const definitions = strictify(swagger.definitions) as Record<string, Schema>;
  const quantity = definitions[QUANTITY];
  if (quantity)
    definitions[QUANTITY] = { description: quantity.description, oneOf: [{ type: 'string' }, { type: 'number' }] };
  for (const [name, definition] of Object.entries(definitions)) {
    const gvks = (definition['x-kubernetes-group-version-kind'] ?? []) as Gvk[];
    for (const gvk of gvks) {
      const standalone = { ...definition, definitions: closure({ $ref: `#/definitions/${name}` }, definitions) };
      writeFileSync(join(dir, fileName(gvk.kind, gvk.group, gvk.version)), JSON.stringify(standalone));
    }
  }
  return definitions;
}

function writeCrdSchemas(dir: string, crdFiles: string[], definitions: Record<string, Schema>): number {
  let written = 0;
  for (const file of crdFiles) {
    const crd = parse(readFileSync(file, 'utf8')) as {
      spec: {
        group: string;
        names: { kind: string };
        versions: Array<{ name: string; schema?: { openAPIV3Schema?: Schema } }>;
      };
    };
    for (const version of crd.spec.versions) {
      const raw = version.schema?.openAPIV3Schema;
      if (!raw) continue;
      const schema = strictify(raw) as Schema;
      // A custom resource's metadata is ObjectMeta, which the CRD leaves open: close it with the API's own schema.
      const properties = { ...(schema.properties as Schema), metadata: { $ref: `#/definitions/${OBJECT_META}` } };
      const standalone = {
        ...schema,
        properties,
        definitions: closure({ $ref: `#/definitions/${OBJECT_META}` }, definitions),
      };
      writeFileSync(join(dir, fileName(crd.spec.names.kind, crd.spec.group, version.name)), JSON.stringify(standalone));
      written++;
    }
  }
  return written;
}

/** The metadata keys KEDA's Kafka scaler reads, from the `keda:"name=…,order=…"` tags of its config struct. */
export function kafkaScalerKeys(source: string): string[] {
  const keys = new Set<string>();
  for (const match of source.matchAll(/keda:"name=([A-Za-z0-9]+),\s*order=([A-Za-z;]+)/g)) {
    const [, name, order] = match as unknown as [string, string, string];
    const sources = order.split(';');
    if (sources.includes('triggerMetadata')) keys.add(name);
    if (sources.includes('resolvedEnv')) keys.add(`${name}FromEnv`);
  }
  return [...keys].sort();
}

export interface SchemaSet {
  dir: string;
  kafkaKeys: string[];
}

/** Builds the schema folder once per clone (keyed by the source versions); later calls find it. */
export function ensureSchemas(log: (line: string) => void = () => {}): SchemaSet {
  const key = `k8s-${schemaSources.kubernetes.version}_keda-${schemaSources.keda.version}_promop-${schemaSources.prometheusOperator.version}`;
  const dir = join(projectRoot, '.cache', 'k8s-schemas', key);
  const keysFile = join(dir, 'keda-kafka-metadata.json');
  if (existsSync(keysFile)) return { dir, kafkaKeys: JSON.parse(readFileSync(keysFile, 'utf8')) as string[] };
  log(
    `making strict JSON schemas from ${Object.values(schemaSources)
      .map((s) => `${s.module}@${s.version}`)
      .join(', ')} (once per clone)`,
  );
  const k8s = goModuleDir(schemaSources.kubernetes.module, schemaSources.kubernetes.version);
  const keda = goModuleDir(schemaSources.keda.module, schemaSources.keda.version);
  const promop = goModuleDir(schemaSources.prometheusOperator.module, schemaSources.prometheusOperator.version);
  const building = `${dir}.building-${process.pid}`;
  rmSync(building, { recursive: true, force: true });
  mkdirSync(building, { recursive: true });
  const definitions = writeKubernetesSchemas(building, join(k8s, 'api', 'openapi-spec', 'swagger.json'));
  const crdDirs = [join(keda, 'config', 'crd', 'bases'), join(promop, 'example', 'prometheus-operator-crd')];
  const crdFiles = crdDirs.flatMap((d) =>
    readdirSync(d)
      .filter((f) => f.endsWith('.yaml'))
      .map((f) => join(d, f)),
  );
  writeCrdSchemas(building, crdFiles, definitions);
  const kafkaKeys = kafkaScalerKeys(readFileSync(join(keda, 'pkg', 'scalers', 'kafka_scaler.go'), 'utf8'));
  if (!kafkaKeys.includes('lagThreshold') || !kafkaKeys.includes('consumerGroup')) {
    throw new AgentStreamsError(
      ErrorCode.STACK_TOOL_MISSING,
      `could not read the Kafka scaler's metadata keys from KEDA ${schemaSources.keda.version} (found: ${kafkaKeys.join(', ')})`,
    );
  }
  writeFileSync(join(building, 'keda-kafka-metadata.json'), JSON.stringify(kafkaKeys));
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, '..'), { recursive: true });
  renameSync(building, dir);
  return { dir, kafkaKeys };
}

export interface ValidationResult {
  resources: number;
  kinds: Record<string, number>;
  /** One line per problem: `Kind/name: /json/path: what is wrong`. */
  problems: string[];
}

interface KubeconformResource {
  kind: string;
  name: string;
  status: string;
  msg?: string;
  validationErrors?: Array<{ path: string; msg: string }>;
}

/** Validates a stream of YAML documents (a kustomize build). */
export function validateManifests(yamlText: string, log: (line: string) => void = () => {}): ValidationResult {
  const schemas = ensureSchemas(log);
  const bin = ensureGoTool(kubeconform, log);
  const problems: string[] = [];
  const kinds: Record<string, number> = {};
  const docs = parseAllDocuments(yamlText);
  let resources = 0;
  for (const doc of docs) {
    if (doc.errors.length > 0) problems.push(`YAML: ${doc.errors.map((e) => e.message).join('; ')}`);
    const value = doc.toJS() as {
      kind?: string;
      metadata?: { name?: string };
      spec?: { triggers?: Array<{ type?: string; metadata?: Record<string, unknown> }> };
    } | null;
    if (!value) continue;
    resources++;
    const kind = value.kind ?? '(no kind)';
    kinds[kind] = (kinds[kind] ?? 0) + 1;
    if (kind === 'ScaledObject') {
      for (const [i, trigger] of (value.spec?.triggers ?? []).entries()) {
        if (trigger.type !== 'kafka') continue;
        for (const key of Object.keys(trigger.metadata ?? {})) {
          if (!schemas.kafkaKeys.includes(key)) {
            problems.push(
              `ScaledObject/${value.metadata?.name}: /spec/triggers/${i}/metadata: unknown Kafka scaler key "${key}" (KEDA ${schemaSources.keda.version} ignores it silently); known keys: ${schemas.kafkaKeys.join(', ')}`,
            );
          }
        }
      }
    }
  }
  const work = mkdtempSync(join(tmpdir(), 'as-k8s-'));
  try {
    const file = join(work, 'manifests.yaml');
    writeFileSync(file, yamlText);
    let out: string;
    try {
      out = execFileSync(
        bin,
        [
          '-strict',
          '-verbose',
          '-output',
          'json',
          '-schema-location',
          `${schemas.dir}/{{ .ResourceKind }}{{ .KindSuffix }}.json`,
          file,
        ],
        {
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'pipe'],
          maxBuffer: 64 * 1024 * 1024,
        },
      );
    } catch (error) {
      // kubeconform exits 1 when a resource is invalid and still prints its report.
      out = String((error as { stdout?: string }).stdout ?? '');
      if (out.trim() === '')
        throw new AgentStreamsError(
          ErrorCode.USAGE,
          `kubeconform failed: ${String((error as { stderr?: string }).stderr ?? (error as Error).message)}`,
          { cause: error },
        );
    }
    const report = JSON.parse(out) as { resources?: KubeconformResource[] };
    for (const r of report.resources ?? []) {
      if (r.status === 'statusValid') continue;
      const where = `${r.kind}/${r.name}`;
      // kubeconform's validationErrors stop at the first level ("/spec: validation failed" for an error behind a
      // $ref); its msg holds every leaf as " - at '/path': what".
      const leaves = [...(r.msg ?? '').matchAll(/- at '([^']*)': (.*?)(?= - at '|$)/g)].map(
        (m) => `${where}: ${m[1] || '/'}: ${m[2]!.trim()}`,
      );
      if (leaves.length > 0) problems.push(...leaves);
      else if (r.validationErrors && r.validationErrors.length > 0)
        for (const e of r.validationErrors) problems.push(`${where}: ${e.path || '/'}: ${e.msg}`);
      else problems.push(`${where}: ${r.status.replace(/^status/, '').toLowerCase()}: ${r.msg ?? ''}`);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return { resources, kinds, problems };
}
