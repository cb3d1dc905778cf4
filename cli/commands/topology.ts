/**
 * `agent-streams topology describe <file>`: what a topology wires together, read from the declaration alone (no
 * service is contacted), like Kafka Streams' TopologyDescription: one sub-topology per processor (each is a
 * consumer group), with its source topics, its kind, its stores (and their changelog), its tables and its sinks.
 * `--format mermaid` draws the same as a graph; `--format json` is the description as data.
 */
import { parseArgs } from 'node:util';
import type { Topology } from '../../runtime/topology/topology.ts';
import { storesOfSpec, tablesOfSpec } from '../../runtime/topology/topology.ts';
import type { Windows } from '../../runtime/windows/index.ts';
import { expectPositionals, usageError } from '../args.ts';
import { checkFormat } from '../format.ts';
import type { Command } from '../main.ts';
import { loadTopology } from './run.ts';

export interface ProcessorDescription {
  name: string;
  group: string;
  kind: string;
  detail: string;
  sources: string[];
  stores: Array<{ name: string; changelog: string }>;
  tables: Array<{ name: string; topic: string }>;
  sinks: Array<{ topic: string; recordTypes: string[] }>;
  /** Routers: record type → topic. */
  routes?: Record<string, string>;
  enrichedBy?: string;
}

export interface TopologyDescription {
  application: string;
  topics: Array<{ name: string; partitions: number; compact: boolean }>;
  deadLetterTopic: string;
  lateTopic: string;
  processors: ProcessorDescription[];
}

const seconds = (ms: number): string =>
  ms % 3_600_000 === 0 ? `${ms / 3_600_000}h` : ms % 60_000 === 0 ? `${ms / 60_000}m` : `${ms / 1000}s`;

function describeWindows(w: Windows): string {
  switch (w.kind) {
    case 'tumbling':
      return `tumbling ${seconds(w.sizeMs)}, grace ${seconds(w.graceMs)}`;
    case 'hopping':
      return `hopping ${seconds(w.sizeMs)} every ${seconds(w.advanceMs)}, grace ${seconds(w.graceMs)}`;
    case 'sliding':
      return `sliding ${seconds(w.timeDifferenceMs)}, grace ${seconds(w.graceMs)}`;
    case 'session':
      return `session gap ${seconds(w.gapMs)}, grace ${seconds(w.graceMs)}`;
  }
}

export function describeTopology(topology: Topology): TopologyDescription {
  return {
    application: topology.application,
    topics: Object.entries(topology.topics).map(([name, t]) => ({
      name,
      partitions: t.partitions,
      compact: t.compact === true || (t.cleanupPolicy ?? '').includes('compact'),
    })),
    deadLetterTopic: topology.deadLetterTopic,
    lateTopic: topology.lateTopic,
    processors: Object.entries(topology.processors).map(([name, spec]) => {
      const detail =
        spec.kind === 'windowed'
          ? `windowed: ${describeWindows(spec.aggregation.window as Windows)}; emit on ${spec.emit}`
          : spec.kind === 'router'
            ? 'router: by record type'
            : 'process';
      return {
        name,
        group: topology.groupId(name),
        kind: spec.kind,
        detail,
        sources: [...spec.inputs],
        stores: storesOfSpec(spec).map((store) => ({ name: store, changelog: topology.changelogTopic(name) })),
        tables: tablesOfSpec(spec).map((table) => ({ name: table, topic: topology.tableTopic(table) })),
        sinks: Object.entries(spec.outputs ?? {}).map(([topic, recordTypes]) => ({
          topic,
          recordTypes: [...recordTypes],
        })),
        ...(spec.kind === 'router' ? { routes: { ...spec.routes } } : {}),
        ...(spec.kind === 'process' && spec.enrich ? { enrichedBy: spec.enrich.service } : {}),
      };
    }),
  };
}

const shortType = (recordType: string): string => recordType.slice(recordType.lastIndexOf('.') + 1);

/** Kafka Streams' TopologyDescription layout: sub-topologies, then nodes with their successors (-->) and predecessors (<--). */
export function describeAsText(d: TopologyDescription): string {
  const lines = [
    `Topology ${d.application}: ${d.processors.length} sub-topologies (one consumer group each); dead letters to ${d.deadLetterTopic}, late records to ${d.lateTopic}`,
  ];
  lines.push('Topics:');
  for (const t of d.topics) lines.push(`  ${t.name} (${t.partitions} partitions${t.compact ? ', compacted' : ''})`);
  d.processors.forEach((p, i) => {
    lines.push(`Sub-topology: ${i} ${p.name} (group ${p.group})`);
    lines.push(`  Source: ${p.name}-source (topics: [${p.sources.join(', ')}])`, `    --> ${p.name}`);
    const next = p.sinks.map((s) => `${p.name}-sink-${s.topic}`);
    lines.push(
      `  Processor: ${p.name} (${p.detail}${p.stores.length > 0 ? `; stores: [${p.stores.map((s) => s.name).join(', ')}]` : ''}${p.tables.length > 0 ? `; tables: [${p.tables.map((t) => t.name).join(', ')}]` : ''}${p.enrichedBy ? `; enriched by ${p.enrichedBy}` : ''})`,
    );
    lines.push(`    --> ${next.join(', ') || 'none'}`, `    <-- ${p.name}-source`);
    for (const s of p.stores) lines.push(`  Store: ${s.name} (Redis; changelog topic ${s.changelog})`);
    for (const t of p.tables) lines.push(`  Table: ${t.name} (topic ${t.topic})`);
    for (const s of p.sinks) {
      const routed = p.routes
        ? Object.entries(p.routes)
            .filter(([, topic]) => topic === s.topic)
            .map(([type]) => shortType(type))
        : [];
      lines.push(
        `  Sink: ${p.name}-sink-${s.topic} (topic: ${s.topic}; ${routed.length > 0 ? `routes ${routed.join(', ')}` : `records ${s.recordTypes.map(shortType).join(', ')}`})`,
        `    <-- ${p.name}`,
      );
    }
  });
  return lines.join('\n');
}

/** A mermaid flowchart: topics as stadiums, processors as boxes, stores and tables as cylinders. */
export function describeAsMermaid(d: TopologyDescription): string {
  const ids = new Map<string, string>();
  const id = (kind: string, name: string): string => {
    const key = `${kind}:${name}`;
    if (!ids.has(key)) ids.set(key, `${kind}${ids.size}_${name.replace(/[^A-Za-z0-9]/g, '_')}`);
    return ids.get(key)!;
  };
  const label = (text: string): string => `"${text.replaceAll('"', '#quot;')}"`;
  const lines = ['flowchart LR'];
  const topics = new Set([
    ...d.topics.map((t) => t.name),
    ...d.processors.flatMap((p) => [...p.sources, ...p.sinks.map((s) => s.topic)]),
  ]);
  for (const t of topics) lines.push(`  ${id('t', t)}([${label(t)}])`);
  for (const p of d.processors) {
    lines.push(`  ${id('p', p.name)}[${label(`${p.name}<br/>${p.detail}`)}]`);
    for (const s of p.stores) lines.push(`  ${id('s', `${p.name}.${s.name}`)}[(${label(`store ${s.name}`)})]`);
    for (const t of p.tables) lines.push(`  ${id('tb', t.name)}[(${label(`table ${t.name}`)})]`);
  }
  for (const p of d.processors) {
    for (const source of p.sources) lines.push(`  ${id('t', source)} --> ${id('p', p.name)}`);
    for (const s of p.sinks)
      lines.push(`  ${id('p', p.name)} -->|${label(s.recordTypes.map(shortType).join(', '))}| ${id('t', s.topic)}`);
    for (const s of p.stores) lines.push(`  ${id('p', p.name)} <-.-> ${id('s', `${p.name}.${s.name}`)}`);
    for (const t of p.tables) lines.push(`  ${id('tb', t.name)} -.-> ${id('p', p.name)}`);
  }
  return lines.join('\n');
}

const options = { format: { type: 'string', default: 'text' } } as const;

export const topologyCommand: Command = {
  summary:
    "Describe a topology's sources, processors, stores, tables and sinks (text, a mermaid graph, or JSON); no service is needed",
  usage: 'topology describe <topology-file> [--format text|mermaid|json]  (table = text)',
  options,
  actions: ['describe'],
  files: true,
  async run(args) {
    const { positionals, values } = parseArgs({ args, allowPositionals: true, options });
    const [action, file] = expectPositionals('topology', positionals, ['describe', 'topology-file']);
    if (action !== 'describe') throw usageError(`topology needs describe, got "${action}"`);
    // `table` is accepted as every data command takes it: for a topology it is the text description.
    const format = checkFormat(values.format, ['text', 'table', 'mermaid', 'json']);
    const description = describeTopology(await loadTopology(file!));
    console.log(
      format === 'json'
        ? JSON.stringify(description, null, 2)
        : format === 'mermaid'
          ? describeAsMermaid(description)
          : describeAsText(description),
    );
    return 0;
  },
};
