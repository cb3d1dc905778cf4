/**
 * Dead letters: a record that cannot be decoded or processed is written, bytes unchanged, to the application's
 * dead-letter topic with headers that say where it came from, which stage failed and why. Written in the same
 * transaction as the batch's other outputs, so each bad record is dead-lettered exactly once.
 */
import { AgentStreamsError } from '../errors.ts';

export const deadLetterStages = ['deserialize', 'process', 'serialize', 'route'] as const;
export type DeadLetterStage = (typeof deadLetterStages)[number];

export const deadLetterHeader = {
  topic: 'as.dlq.topic',
  partition: 'as.dlq.partition',
  offset: 'as.dlq.offset',
  timestamp: 'as.dlq.timestamp',
  processor: 'as.dlq.processor',
  stage: 'as.dlq.stage',
  errorCode: 'as.dlq.error.code',
  errorClass: 'as.dlq.error.class',
  errorMessage: 'as.dlq.error.message',
  /** Why, in one word, when the error says (`details.reason`): e.g. body, range, event-time-ahead. */
  errorReason: 'as.dlq.error.reason',
} as const;

/** Headers a re-driven record carries (runtime/engine/redrive.ts). */
export const redriveHeader = {
  /** Where the dead letter was: `<dead-letter topic>/<partition>/<offset>`. */
  from: 'as.redriven.from',
  /**
   * The consumer group that dead-lettered it, the only one that processes it again: the record goes back to its
   * source topic, which other groups read too, and they skip it rather than process it twice.
   */
  group: 'as.redrive.group',
} as const;

/** A re-driven record meant for another consumer group (see `redriveHeader.group`). */
export function redrivenForAnotherGroup(headers: SourceRecord['headers'], groupId: string): boolean {
  const target = headers?.[redriveHeader.group];
  return target !== undefined && target.toString() !== groupId;
}

export interface SourceRecord {
  topic: string;
  partition: number;
  offset: string;
  timestamp: string;
  key: Buffer | null;
  value: Buffer | null;
  headers?: Record<string, Buffer | string | undefined>;
}

export interface ProducedMessage {
  topic: string;
  partition?: number;
  key: Buffer | string | null;
  value: Buffer | null;
  timestamp?: string;
  headers?: Record<string, Buffer | string>;
}

/** The record, bytes and headers unchanged, re-addressed to `topic` with headers saying where it came from. */
function forwardWithProvenance(
  topic: string,
  processor: string,
  record: SourceRecord,
  extra: Record<string, string>,
): ProducedMessage {
  const headers: Record<string, Buffer | string> = {};
  for (const [name, value] of Object.entries(record.headers ?? {})) if (value !== undefined) headers[name] = value;
  return {
    topic,
    key: record.key,
    value: record.value,
    timestamp: record.timestamp,
    headers: {
      ...headers,
      [deadLetterHeader.topic]: record.topic,
      [deadLetterHeader.partition]: String(record.partition),
      [deadLetterHeader.offset]: record.offset,
      [deadLetterHeader.timestamp]: record.timestamp,
      [deadLetterHeader.processor]: processor,
      ...extra,
    },
  };
}

export function deadLetter(
  topic: string,
  processor: string,
  stage: DeadLetterStage,
  record: SourceRecord,
  error: unknown,
): ProducedMessage {
  const err = error instanceof Error ? error : new Error(String(error));
  const reason =
    err instanceof AgentStreamsError && typeof err.details.reason === 'string' ? err.details.reason : undefined;
  return forwardWithProvenance(topic, processor, record, {
    ...(reason === undefined ? {} : { [deadLetterHeader.errorReason]: reason }),
    [deadLetterHeader.stage]: stage,
    [deadLetterHeader.errorCode]: err instanceof AgentStreamsError ? err.code : 'AS_PROCESS',
    [deadLetterHeader.errorClass]: err.constructor.name,
    // Header values are bytes on the wire; keep them bounded.
    [deadLetterHeader.errorMessage]: err.message.slice(0, 2000),
  });
}

/** What the log says of a dead letter: where the record came from and why it failed, read back from its headers. */
export function deadLetterLogFields(message: ProducedMessage): Record<string, string | number> {
  const header = (name: string): string => message.headers?.[name]?.toString() ?? '';
  return {
    topic: header(deadLetterHeader.topic),
    partition: Number(header(deadLetterHeader.partition)),
    offset: header(deadLetterHeader.offset),
    stage: header(deadLetterHeader.stage),
    code: header(deadLetterHeader.errorCode),
    // The full message is in the header; the log keeps a line short.
    message: header(deadLetterHeader.errorMessage).slice(0, 300),
  };
}

/** A late record goes to the late-records topic with the same provenance headers. */
export function lateRecord(
  topic: string,
  processor: string,
  record: SourceRecord,
  streamTime: number,
  eventTime: number,
): ProducedMessage {
  return forwardWithProvenance(topic, processor, record, {
    'as.late.event-time': String(eventTime),
    'as.late.stream-time': String(streamTime),
  });
}
