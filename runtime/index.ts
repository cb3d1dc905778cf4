/**
 * The public API of Agent Streams: what `import … from 'agent-streams'` gives a user's topology, processors and
 * launcher. The market fleet in this repository (`processors/`, `topologies/`) imports the runtime only from here
 * (and the test driver from `agent-streams/testing`), exactly as another repository would.
 */
export * from './topology/topology.ts';
export * from './topology/processor.ts';
export {
  topic,
  store,
  table,
  type Topic,
  type TopicOf,
  type Store,
  type Table,
  type RecordTypeMap,
  type ValueOf,
  type InputRecord,
  type RecordOf,
  type InputValueOf,
  type Outgoing,
} from './topology/handles.ts';
export * from './windows/index.ts';
export * from './config/index.ts';
export * from './errors.ts';
export {
  runProcessor,
  type RunProcessorOptions,
  type EnrichmentService,
  type ProcessorHandle,
  type MemberHealth,
} from './engine/runner.ts';
export { AvroSerde, type DecodedRecord } from './serde/avro.ts';
export { compileReaderSchema, type ReaderSchemaSource, type ReaderSchema } from './serde/readers.ts';
export {
  loadSchemas,
  registerSchemas,
  parseSchema,
  compatibilityLevels,
  type Compatibility,
  type SchemaFile,
} from './serde/schemas.ts';
export * from './llm/index.ts';
export type {
  ClickHouseSinkDeclaration,
  ServiceDeps,
  ServiceFactory,
  SinkDeclaration,
  SinkDeps,
  SinkMappings,
} from './topology/services.ts';
export { mapTo, type MappedRows, type RecordMapping, type RecordMeta } from '../sinks/clickhouse/topic-sink.ts';
// Types the public API's signatures mention, so that users (and the API reference) can name them.
export type { ConfigOf, ConfigSchema } from './config/schema.ts';
export type { Setting } from './config/settings.ts';
export {
  createMetrics,
  type CreateMetricsOptions,
  type Metrics,
  type SampledGauge,
  type Sampler,
} from './observability/metrics.ts';
export type { EventLog, LogFields } from './observability/log.ts';
export type { RetryOptions, Sleep } from './retry.ts';
export type { RangeCheck } from './serde/ranges.ts';
export type { ResolverCache, ReaderSchemas, Resolution } from './serde/readers.ts';
export type { WriterEntry } from './serde/avro.ts';
export type { RegisterOutcome } from './serde/schemas.ts';
export type { ReserveResult } from './llm/budget.ts';
export type { Release } from './llm/semaphore.ts';
export type { AuditFields } from './llm/audit.ts';
export type { ClassifyOptions } from './llm/call-error.ts';
export type { EnrichmentTrace } from './engine/runner.ts';
export type { Row } from '../sinks/clickhouse/writer.ts';
export type { Codec } from './engine/batch.ts';
