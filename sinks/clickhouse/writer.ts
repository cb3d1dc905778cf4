/**
 * Batched, bounded, retrying inserts into ClickHouse.
 *
 * Rows are encoded to RowBinary when they are written (row-binary.ts: each value checked against its column's type,
 * so a bad row fails at the caller, synchronously, before it can spoil a batch of thousands), straight into large
 * per-table chunks, and sent as one INSERT per batch when the batch is full (rows or bytes) or old enough. Memory is bounded: rows buffered, queued and in flight together never exceed
 * `maxBufferedRows` / `maxBufferedBytes`; past that, `write()` throws `SinkBackpressureError` with a `retryAfterMs`
 * hint, and the caller pauses its input (Quix's `SinkBackpressureError`) instead of buffering without limit.
 *
 * Failures are sorted by `classifyInsertError`:
 * - retriable ones are retried with the project's one retry policy, indefinitely by default: rows are never dropped;
 * - a data error is narrowed down to the offending rows (the server's "(at row N)" hint, else bisection), the other
 *   rows are inserted, and the offending ones go to `onRejected` (or, without it, out of the next `flush()`);
 * - a fatal error (unknown table, permissions, …) fails the writer: nothing more is accepted, and the rows not
 *   inserted stay unacknowledged, so a caller that commits its input only after `flush()` loses nothing.
 *
 * Rows written twice (a retried insert whose first attempt reached the server, a batch replayed after a crash)
 * are duplicates only physically: the tables are ReplacingMergeTree keyed by deterministic ids and read with FINAL.
 */
import { Readable } from 'node:stream';
import type { ClickHouseClient } from '@clickhouse/client';
import { AgentStreamsError, ErrorCode } from '../../runtime/errors.ts';
import { retry, withRetry, type RetryPolicy } from '../../runtime/retry.ts';
import type { Metrics } from '../../runtime/observability/metrics.ts';
import { classifyInsertError, isMissingObject, rowHintOf, type InsertFailureKind } from './insert-error.ts';
import { renderQuery } from './params.ts';
import {
  codecFor,
  compileRowEncoder,
  RowBinaryBuilder,
  RowBinaryReader,
  sliceRows,
  ValueInvalid,
  type Codec,
  type EncodedRows,
  type RowEncoder,
} from './row-binary.ts';

/**
 * One table row: an object keyed by column name (checked against the table at write time). DateTime columns take
 * whole epoch seconds (docs/clickhouse.md), the other types what row-binary.ts says. `object` rather than a record
 * type so that row interfaces fit.
 */
export type Row = object;

export interface ClickHouseWriterTuning {
  /** A table's buffer is sent once it holds this many rows. */
  maxBatchRows?: number;
  /** … or this many bytes of RowBinary. */
  maxBatchBytes?: number;
  /** … or when its oldest row has waited this long. */
  maxBatchAgeMs?: number;
  /** Rows buffered, queued and in flight, over all tables; beyond it `write()` signals backpressure. */
  maxBufferedRows?: number;
  /** The same bound in bytes of RowBinary. */
  maxBufferedBytes?: number;
  /** INSERT requests in flight at once (they may go to different tables). */
  maxConcurrentInserts?: number;
  /** How retriable insert failures are retried; the default retries until success or `abort()`. */
  retry?: RetryPolicy;
  /**
   * How long "table/database does not exist" is retried before it is taken as final (default 30 s): a ClickHouse
   * server that is shutting down or starting up answers that for tables it has detached or not attached yet.
   */
  missingTableGraceMs?: number;
}

export interface RejectedRow<Tag> {
  /** The row as it was sent, decoded back and shown as one JSON object (64-bit integers past 2^53 as `123n`). */
  json: string;
  /** What the caller passed to `write()` with it, e.g. the Kafka record it came from. */
  tag: Tag | undefined;
  error: AgentStreamsError;
}

export interface ClickHouseWriterOptions<Tag = undefined> extends ClickHouseWriterTuning {
  client: ClickHouseClient;
  /** Tables this writer may write; their columns are read from the server once, at `open`. */
  tables: readonly string[];
  /** Receives rows the server refused (bad data). Awaited before the batch counts as done, so before `flush()` resolves. */
  onRejected?: (table: string, rows: ReadonlyArray<RejectedRow<Tag>>) => void | Promise<void>;
  metrics?: Pick<Metrics, 'sinkOperationDuration' | 'sinkOperationErrors'>;
  log?: (event: string, fields?: Record<string, unknown>) => void;
}

/** Thrown by `write()` when the buffer is full: pause the input for `retryAfterMs`, then write the same rows again. */
export class SinkBackpressureError extends AgentStreamsError {
  /** Read by `retryAfterMsOf` in runtime/retry.ts, so `withRetry` honours it too. */
  readonly retryAfterMs: number;

  constructor(message: string, retryAfterMs: number, details: Record<string, unknown>) {
    super(ErrorCode.SINK_BACKPRESSURE, message, { retriable: true, details: { ...details, retryAfterMs } });
    this.name = 'SinkBackpressureError';
    this.retryAfterMs = retryAfterMs;
  }
}

export function isSinkBackpressure(error: unknown): error is SinkBackpressureError {
  return error instanceof SinkBackpressureError;
}

export const defaultWriterTuning = {
  maxBatchRows: 50_000,
  maxBatchBytes: 32 * 1024 * 1024,
  maxBatchAgeMs: 1_000,
  maxBufferedRows: 200_000,
  maxBufferedBytes: 128 * 1024 * 1024,
  maxConcurrentInserts: 2,
  missingTableGraceMs: 30_000,
} as const;

const defaultRetry = retry({ initialMs: 100, maxMs: 5_000 });

interface Column {
  name: string;
  codec: Codec;
}

interface TableBuffer<Tag> {
  table: string;
  columns: Column[];
  encodeRow: RowEncoder;
  sql: string;
  rows: RowBinaryBuilder;
  tags: Array<Tag | undefined>;
  timer: NodeJS.Timeout | undefined;
}

interface Batch<Tag> {
  /** Sequence numbers of the sealed buffers it carries (several after merging): what `flush()` waits on. */
  seqs: number[];
  buffer: TableBuffer<Tag>;
  rows: EncodedRows;
  tags: Array<Tag | undefined>;
  bytes: number;
}

/** Some rows of a batch, as [from, to) ranges of its row indexes: what one insert attempt sends. */
type Selection = Array<readonly [number, number]>;

const countOf = (selection: Selection): number => selection.reduce((n, [from, to]) => n + to - from, 0);

/** The selection's rows before its `k`-th row, and from it on. */
function splitAt(selection: Selection, k: number): [Selection, Selection] {
  const left: Selection = [];
  const right: Selection = [];
  let seen = 0;
  for (const [from, to] of selection) {
    const cut = Math.min(to, Math.max(from, from + k - seen));
    if (cut > from) left.push([from, cut]);
    if (to > cut) right.push([cut, to]);
    seen += to - from;
  }
  return [left, right];
}

interface FlushWaiter {
  target: number;
  resolve: () => void;
  reject: (error: unknown) => void;
}

export const writerStates = ['open', 'closing', 'closed', 'failed'] as const;
export type WriterState = (typeof writerStates)[number];

/** Lifecycle: open → closing → closed; any live state → failed (fatal insert error) → closed. */
const writerTransitions: Record<WriterState, readonly WriterState[]> = {
  open: ['closing', 'failed', 'closed'],
  closing: ['closed', 'failed'],
  failed: ['closed'],
  closed: [],
};

function sampleOf(value: unknown): string {
  let text: string;
  try {
    text =
      typeof value === 'string'
        ? value
        : JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));
  } catch {
    text = String(value);
  }
  return text.length > 500 ? `${text.slice(0, 500)}…` : text;
}

function rowInvalid(table: string, row: unknown, why: string): AgentStreamsError {
  return new AgentStreamsError(
    ErrorCode.SINK_ROW_INVALID,
    `Row for ClickHouse table "${table}" is invalid: ${why}. Fix the mapping that built it; the row was not buffered.`,
    {
      details: { table, sample: sampleOf(row) },
    },
  );
}

function positive(name: string, value: number, integer = true): string | undefined {
  return Number.isFinite(value) && value > 0 && (!integer || Number.isInteger(value))
    ? undefined
    : `${name} must be a positive ${integer ? 'whole ' : ''}number, got ${value}`;
}

export class ClickHouseWriter<Tag = undefined> {
  /** Reads the tables' columns (to check every row against them) and returns a writer ready for `write()`. */
  static async open<Tag = undefined>(options: ClickHouseWriterOptions<Tag>): Promise<ClickHouseWriter<Tag>> {
    if (options.tables.length === 0)
      throw new AgentStreamsError(ErrorCode.SINK_OPTIONS_INVALID, 'ClickHouseWriter needs at least one table.');
    // The server's column order is irrelevant (the INSERT names the columns, and RowBinary follows that list), which
    // is as well: 18.16's system.columns has no `position`, and no `IN [array]` either, hence has().
    const sql = renderQuery(
      `SELECT table, name, type FROM system.columns
WHERE database = currentDatabase() AND has({tables:Array(String)}, table) AND default_kind NOT IN ('MATERIALIZED', 'ALIAS')`,
      { tables: [...new Set(options.tables)] },
    );
    const rows = await (
      await options.client.query({ query: sql, format: 'JSONEachRow' })
    ).json<{ table: string; name: string; type: string }>();
    const columns = new Map<string, Column[]>();
    const unsupported: string[] = [];
    for (const row of rows) {
      let list = columns.get(row.table);
      if (!list) columns.set(row.table, (list = []));
      const codec = codecFor(row.type);
      if (!codec) unsupported.push(`${row.table}.${row.name} ${row.type}`);
      else list.push({ name: row.name, codec });
    }
    if (unsupported.length > 0) {
      throw new AgentStreamsError(
        ErrorCode.SINK_OPTIONS_INVALID,
        `ClickHouseWriter cannot write column(s) ${unsupported.join(', ')}: it writes (U)Int8–64, Float32/64, String, FixedString, Enum8/16, DateTime, DateTime64 and Nullable, Array or LowCardinality of those.`,
        { details: { unsupported } },
      );
    }
    const missing = options.tables.filter((table) => !columns.has(table));
    if (missing.length > 0) {
      throw new AgentStreamsError(
        ErrorCode.SINK_OPTIONS_INVALID,
        `ClickHouse table(s) ${missing.join(', ')} do not exist in the client's database. Run the migrations (\`agent-streams clickhouse migrate\`) or fix the table names.`,
        { details: { missing } },
      );
    }
    return new ClickHouseWriter<Tag>(options, columns);
  }

  readonly stats = {
    /** Rows accepted by `write()`. */
    rowsWritten: 0,
    /** Rows in INSERTs that succeeded (a retried or replayed row counts each time). */
    rowsInserted: 0,
    /** INSERT requests that succeeded. */
    inserts: 0,
    /** Failed INSERT attempts that were retried. */
    insertRetries: 0,
    /** Rows the server refused as bad data. */
    rowsRejected: 0,
    /** `write()` calls refused with backpressure. */
    backpressureSignals: 0,
  };

  private state: WriterState = 'open';
  private failure: AgentStreamsError | undefined;
  private readonly buffers = new Map<string, TableBuffer<Tag>>();
  private readonly queue: Array<Batch<Tag>> = [];
  private readonly outstanding = new Set<number>();
  private readonly waiters: FlushWaiter[] = [];
  private readonly abortController = new AbortController();
  private readonly tuning: Required<Omit<ClickHouseWriterTuning, 'retry'>>;
  private readonly policy: RetryPolicy;
  private rejectedWithoutHandler: Array<{ table: string; rows: Array<RejectedRow<Tag>> }> = [];
  private nextSeq = 0;
  /** When a batch was last sealed (sent on to the insert queue), by `performance.now()`. */
  private lastSealAt = Number.NEGATIVE_INFINITY;
  private inflight = 0;
  private bufferedRowCount = 0;
  private bufferedByteCount = 0;
  /** Smoothed duration of successful inserts: the backpressure hint while the server is healthy. */
  private insertMsAverage = 50;
  /** When the insert that is currently failing will be tried again: the hint while the server is away. */
  private retryingUntil = 0;
  /** When inserts started failing with "does not exist" (see `missingTableGraceMs`); reset by any success. */
  private missingSince: number | undefined;

  private constructor(
    private readonly options: ClickHouseWriterOptions<Tag>,
    columns: Map<string, Column[]>,
  ) {
    this.tuning = {
      maxBatchRows: options.maxBatchRows ?? defaultWriterTuning.maxBatchRows,
      maxBatchBytes: options.maxBatchBytes ?? defaultWriterTuning.maxBatchBytes,
      maxBatchAgeMs: options.maxBatchAgeMs ?? defaultWriterTuning.maxBatchAgeMs,
      maxBufferedRows: options.maxBufferedRows ?? defaultWriterTuning.maxBufferedRows,
      maxBufferedBytes: options.maxBufferedBytes ?? defaultWriterTuning.maxBufferedBytes,
      maxConcurrentInserts: options.maxConcurrentInserts ?? defaultWriterTuning.maxConcurrentInserts,
      missingTableGraceMs: options.missingTableGraceMs ?? defaultWriterTuning.missingTableGraceMs,
    };
    const t = this.tuning;
    const problems = [
      positive('maxBatchRows', t.maxBatchRows),
      positive('maxBatchBytes', t.maxBatchBytes),
      positive('maxBatchAgeMs', t.maxBatchAgeMs, false),
      positive('maxBufferedRows', t.maxBufferedRows),
      positive('maxBufferedBytes', t.maxBufferedBytes),
      positive('maxConcurrentInserts', t.maxConcurrentInserts),
      positive('missingTableGraceMs', t.missingTableGraceMs, false),
    ].filter((p): p is string => p !== undefined);
    if (problems.length > 0) {
      throw new AgentStreamsError(
        ErrorCode.SINK_OPTIONS_INVALID,
        `Invalid ClickHouseWriter options: ${problems.join('; ')}.`,
        { details: { problems } },
      );
    }
    this.policy = options.retry ?? defaultRetry;
    for (const [table, cols] of columns) {
      this.buffers.set(table, {
        table,
        columns: cols,
        // Naming the columns makes a table that gained a column fail loudly instead of filling it with zeros.
        encodeRow: compileRowEncoder(cols),
        sql: `INSERT INTO ${table} (${cols.map((c) => c.name).join(', ')}) FORMAT RowBinary`,
        rows: new RowBinaryBuilder(),
        tags: [],
        timer: undefined,
      });
    }
  }

  get currentState(): WriterState {
    return this.state;
  }

  /** Rows and bytes held now: buffered, queued and in flight. */
  get buffered(): { rows: number; bytes: number } {
    return { rows: this.bufferedRowCount, bytes: this.bufferedByteCount };
  }

  /**
   * Buffers `rows` for `table`, all or none. Throws `SinkBackpressureError` when they do not fit (unless the writer
   * is empty: a single oversized write is taken rather than refused forever), `AS_SINK_ROW_INVALID` for a row that
   * misses a column, has an unknown one, or carries a non-epoch DateTime, and the writer's failure once it has failed.
   * `tag` is handed back with any row the server later refuses.
   */
  write(table: string, rows: readonly Row[], tag?: Tag): void {
    this.assertWritable();
    const buffer = this.buffers.get(table);
    if (!buffer) {
      throw new AgentStreamsError(
        ErrorCode.USAGE,
        `Table "${table}" was not opened by this writer; it writes ${[...this.buffers.keys()].join(', ')}.`,
      );
    }
    if (rows.length === 0) return;
    if (this.bufferedRowCount > 0 && this.bufferedRowCount + rows.length > this.tuning.maxBufferedRows)
      throw this.backpressure(table, rows.length);
    const out = buffer.rows;
    const bytesBefore = out.bytes;
    out.begin();
    try {
      for (let i = 0; i < rows.length; i += 1) this.encode(buffer, rows[i]!);
    } catch (error) {
      out.rollback();
      throw error;
    }
    const bytes = out.bytes - bytesBefore;
    if (this.bufferedByteCount > 0 && this.bufferedByteCount + bytes > this.tuning.maxBufferedBytes) {
      out.rollback();
      throw this.backpressure(table, rows.length);
    }
    this.accepted(buffer, rows.length, bytes, tag);
  }

  /** Counts rows just encoded into `buffer`, and sends the batch if it is full or starts its age timer. */
  private accepted(buffer: TableBuffer<Tag>, rows: number, bytes: number, tag: Tag | undefined): void {
    for (let i = 0; i < rows; i += 1) buffer.tags.push(tag);
    this.bufferedRowCount += rows;
    this.bufferedByteCount += bytes;
    this.stats.rowsWritten += rows;
    const out = buffer.rows;
    if (out.rows >= this.tuning.maxBatchRows || out.bytes >= this.tuning.maxBatchBytes) {
      this.seal(buffer);
    } else if (!buffer.timer) {
      buffer.timer = setTimeout(() => this.seal(buffer), this.tuning.maxBatchAgeMs);
      buffer.timer.unref();
    }
  }

  /** The columns of `table` in the order its rows are encoded (the INSERT's column list), with their codecs. */
  columnsOf(table: string): ReadonlyArray<{ name: string; codec: Codec }> {
    const buffer = this.buffers.get(table);
    if (!buffer)
      throw new AgentStreamsError(ErrorCode.USAGE, `Table "${table}" was not opened by this writer.`, {
        details: { table },
      });
    return buffer.columns;
  }

  /**
   * Buffers one row that `encode` writes straight into the table's RowBinary, every column in `columnsOf(table)`'s
   * order. If `encode` returns false or throws, the row is taken back and `writeWith` returns false: the caller then
   * builds the row as an object and `write()`s it, which says what is wrong with it. Throws `SinkBackpressureError`
   * and the writer's failure as `write()` does.
   */
  writeWith<Input>(
    table: string,
    encode: (out: RowBinaryBuilder, input: Input) => boolean,
    input: Input,
    tag?: Tag,
  ): boolean {
    this.assertWritable();
    const buffer = this.buffers.get(table);
    if (!buffer) this.columnsOf(table);
    if (this.bufferedRowCount > 0 && this.bufferedRowCount + 1 > this.tuning.maxBufferedRows)
      throw this.backpressure(table, 1);
    const out = buffer!.rows;
    const bytesBefore = out.bytes;
    out.begin();
    let encoded: boolean;
    try {
      encoded = encode(out, input);
    } catch {
      encoded = false;
    }
    if (!encoded) {
      out.rollback();
      return false;
    }
    out.endRow();
    const bytes = out.bytes - bytesBefore;
    if (this.bufferedByteCount > 0 && this.bufferedByteCount + bytes > this.tuning.maxBufferedBytes) {
      out.rollback();
      throw this.backpressure(table, 1);
    }
    this.accepted(buffer!, 1, bytes, tag);
    return true;
  }

  /** Rows written and not yet sent: in the tables' open batches, waiting to fill or age. */
  get unsentRows(): number {
    let rows = 0;
    for (const buffer of this.buffers.values()) rows += buffer.rows.rows;
    return rows;
  }

  /**
   * Sends the open batches now, without waiting for them to fill or age, if together they hold at least a tenth of
   * `maxBatchRows` and no batch was sent in the last quarter of `maxBatchAgeMs` (so a caller that is always caught
   * up, with rows coming fast, sends at most four early inserts per batch age, not one per fetch; a trickle of rows
   * stays below the tenth and waits for the age). For a caller that knows no more rows are coming soon: the topic
   * sink calls it when a partition has caught up. Returns whether it sent.
   */
  sendEarly(): boolean {
    if (this.failure || this.state !== 'open') return false;
    if (this.unsentRows < Math.max(1, Math.floor(this.tuning.maxBatchRows / 10))) return false;
    if (performance.now() - this.lastSealAt < this.tuning.maxBatchAgeMs / 4) return false;
    for (const buffer of this.buffers.values()) this.seal(buffer);
    return true;
  }

  /**
   * Sends everything written so far and resolves once all of it is in ClickHouse (or, for refused rows, handed to
   * `onRejected`). Rows written while it waits are not waited for. Rejects with the writer's failure, or, without an
   * `onRejected` handler, with `AS_SINK_ROW_REJECTED` naming the table and a sample of each refused row.
   */
  async flush(): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.state === 'closed') return;
    for (const buffer of this.buffers.values()) this.seal(buffer);
    const target = this.nextSeq - 1;
    await new Promise<void>((resolve, reject) => {
      this.waiters.push({ target, resolve, reject });
      this.settleWaiters();
    });
    const rejected = this.rejectedWithoutHandler;
    if (rejected.length > 0) {
      this.rejectedWithoutHandler = [];
      const rows = rejected.flatMap((r) => r.rows.map((row) => ({ table: r.table, json: row.json, error: row.error })));
      const first = rows[0]!;
      throw new AgentStreamsError(
        ErrorCode.SINK_ROW_REJECTED,
        `ClickHouse refused ${rows.length} row(s) as bad data; the other rows were inserted. First: table "${first.table}", ${first.error.message}`,
        {
          details: {
            tables: [...new Set(rows.map((r) => r.table))],
            rows: rows.map((r) => ({ table: r.table, sample: sampleOf(r.json), reason: r.error.message })),
          },
        },
      );
    }
  }

  /** Flushes, then refuses further writes. Idempotent. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    if (this.state === 'open') this.transition('closing');
    try {
      await this.flush();
    } finally {
      this.stopTimers();
      // Read through the getter: the flush may have failed or aborted the writer meanwhile.
      if (this.currentState !== 'closed') this.transition('closed');
    }
  }

  /**
   * Stops at once, as a crash would: retries end, timers stop, unsent rows are dropped. Only for callers whose input
   * is not yet acknowledged for those rows (the topic sink commits offsets only after `flush()`), so they come again.
   */
  abort(): void {
    if (this.state === 'closed') return;
    this.abortController.abort(new AgentStreamsError(ErrorCode.ABORTED, 'ClickHouseWriter aborted.'));
    this.stopTimers();
    this.transition('closed');
    const error =
      this.failure ??
      new AgentStreamsError(ErrorCode.SINK_CLOSED, 'ClickHouseWriter was aborted before these rows were inserted.');
    for (const waiter of this.waiters.splice(0)) waiter.reject(error);
  }

  private transition(to: WriterState): void {
    if (!writerTransitions[this.state].includes(to)) {
      throw new AgentStreamsError(ErrorCode.USAGE, `ClickHouseWriter cannot go from ${this.state} to ${to}.`);
    }
    this.state = to;
  }

  private assertWritable(): void {
    if (this.failure) throw this.failure;
    if (this.state !== 'open')
      throw new AgentStreamsError(
        ErrorCode.SINK_CLOSED,
        `ClickHouseWriter is ${this.state}; write() needs an open writer.`,
      );
  }

  private stopTimers(): void {
    for (const buffer of this.buffers.values()) {
      if (buffer.timer) clearTimeout(buffer.timer);
      buffer.timer = undefined;
    }
  }

  private backpressure(table: string, rows: number): SinkBackpressureError {
    this.stats.backpressureSignals += 1;
    const now = Date.now();
    // While an insert is failing, nothing frees up before its next attempt; otherwise about one insert's time.
    const retryAfterMs = Math.round(
      this.retryingUntil > now ? this.retryingUntil - now + 10 : Math.min(1_000, Math.max(10, this.insertMsAverage)),
    );
    return new SinkBackpressureError(
      `ClickHouse writer buffer is full (${this.bufferedRowCount} rows, ${this.bufferedByteCount} bytes held; limits ${this.tuning.maxBufferedRows} rows, ${this.tuning.maxBufferedBytes} bytes). Pause the input and write these ${rows} row(s) again in ${retryAfterMs} ms.`,
      retryAfterMs,
      { table, rows, bufferedRows: this.bufferedRowCount, bufferedBytes: this.bufferedByteCount },
    );
  }

  /** Checks `row` against the table's columns and appends it to the table's RowBinary, or throws (the caller rolls back). */
  private encode(buffer: TableBuffer<Tag>, row: Row): void {
    if (typeof row !== 'object' || row === null || Array.isArray(row))
      throw rowInvalid(buffer.table, row, 'expected an object keyed by column name');
    const fields = row as Readonly<Record<string, unknown>>;
    // Object.keys().length is ~6x cheaper than a for-in with hasOwn, and this runs for every row.
    const keys = Object.keys(fields).length;
    if (keys !== buffer.columns.length) {
      const known = new Set(buffer.columns.map((c) => c.name));
      const unknown = Object.keys(row).filter((key) => !known.has(key));
      // Fewer keys than columns: one is missing, which the loop below names.
      if (unknown.length > 0) throw rowInvalid(buffer.table, row, `unknown column(s) ${unknown.join(', ')}`);
    }
    const out = buffer.rows;
    let encoded = false;
    try {
      encoded = buffer.encodeRow(fields, out);
    } catch (error) {
      // A property getter that throws, say: the row's fault, so it is refused like any misfit, not retried forever.
      if (!(error instanceof ValueInvalid))
        throw rowInvalid(buffer.table, row, `it could not be read (${(error as Error).message})`);
    }
    if (!encoded) this.explain(buffer, row);
    out.endRow();
  }

  /** Throws the reason `row` does not fit the table (the slow path, taken only once the fast one failed). */
  private explain(buffer: TableBuffer<Tag>, row: Row): never {
    const fields = row as Readonly<Record<string, unknown>>;
    const scratch = new RowBinaryBuilder(64);
    for (const column of buffer.columns) {
      const value = fields[column.name];
      if (value === undefined) {
        // Every column is in the INSERT's list, and RowBinary has no way to leave one out.
        throw rowInvalid(buffer.table, row, `column "${column.name}" is missing (every column must be sent)`);
      }
      if (value === null && !column.codec.nullable)
        throw rowInvalid(buffer.table, row, `column "${column.name}" is null but not Nullable`);
      try {
        column.codec.write(scratch, value);
      } catch (error) {
        if (!(error instanceof ValueInvalid)) throw error;
        const why = error.why.startsWith('is ') ? ` ${error.why}` : ` (${column.codec.type}): ${error.why}`;
        throw rowInvalid(buffer.table, row, `column "${column.name}"${why}`);
      }
    }
    throw rowInvalid(buffer.table, row, 'it does not fit the table');
  }

  /** Row `index` of `rows`, decoded back into an object and shown as JSON: for the errors of refused rows. */
  private show(buffer: TableBuffer<Tag>, rows: EncodedRows, index: number): string {
    const reader = new RowBinaryReader(Buffer.concat(sliceRows(rows, index, index + 1)));
    const row: Record<string, unknown> = {};
    try {
      for (const column of buffer.columns) row[column.name] = column.codec.read(reader);
    } catch (error) {
      row['(undecodable)'] = (error as Error).message;
    }
    return JSON.stringify(row, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));
  }

  private seal(buffer: TableBuffer<Tag>): void {
    if (buffer.timer) clearTimeout(buffer.timer);
    buffer.timer = undefined;
    if (buffer.rows.rows === 0) return;
    this.lastSealAt = performance.now();
    const seq = this.nextSeq;
    this.nextSeq += 1;
    this.outstanding.add(seq);
    const bytes = buffer.rows.bytes;
    this.queue.push({ seqs: [seq], buffer, rows: buffer.rows.take(), tags: buffer.tags, bytes });
    buffer.tags = [];
    this.pump();
  }

  private pump(): void {
    while (
      this.inflight < this.tuning.maxConcurrentInserts &&
      this.queue.length > 0 &&
      (this.state === 'open' || this.state === 'closing')
    ) {
      const batch = this.takeMerged();
      this.inflight += 1;
      void this.send(batch).finally(() => {
        this.inflight -= 1;
        this.pump();
      });
    }
  }

  /** The next batch, with later queued batches of the same table folded in while they fit: fewer, larger inserts. */
  private takeMerged(): Batch<Tag> {
    const first = this.queue.shift()!;
    for (let i = 0; i < this.queue.length;) {
      const next = this.queue[i]!;
      if (
        next.buffer === first.buffer &&
        first.tags.length + next.tags.length <= this.tuning.maxBatchRows &&
        first.bytes + next.bytes <= this.tuning.maxBatchBytes
      ) {
        const shift = first.bytes;
        first.rows.parts.push(...next.rows.parts);
        for (const end of next.rows.rowEnds) first.rows.rowEnds.push(end + shift);
        first.tags = first.tags.concat(next.tags);
        first.bytes += next.bytes;
        first.seqs.push(...next.seqs);
        this.queue.splice(i, 1);
      } else {
        i += 1;
      }
    }
    return first;
  }

  private async send(batch: Batch<Tag>): Promise<void> {
    try {
      const rejected = await this.insertOrIsolate(batch, [[0, batch.tags.length]]);
      if (rejected.length > 0) {
        this.stats.rowsRejected += rejected.length;
        this.options.log?.('clickhouse.rows-rejected', {
          table: batch.buffer.table,
          rows: rejected.length,
          first: rejected[0]!.error.message,
        });
        if (this.options.onRejected) await this.options.onRejected(batch.buffer.table, rejected);
        else this.rejectedWithoutHandler.push({ table: batch.buffer.table, rows: rejected });
      }
    } catch (error) {
      this.fail(error, batch.buffer.table);
      return;
    }
    this.bufferedRowCount -= batch.tags.length;
    this.bufferedByteCount -= batch.bytes;
    for (const seq of batch.seqs) this.outstanding.delete(seq);
    this.settleWaiters();
  }

  private fail(error: unknown, table: string): void {
    if (this.state === 'closed') return;
    this.failure ??=
      error instanceof AgentStreamsError && error.code === ErrorCode.SINK_INSERT_FAILED
        ? error
        : new AgentStreamsError(
            ErrorCode.SINK_INSERT_FAILED,
            `Insert into ClickHouse table "${table}" failed and cannot succeed by retrying: ${(error as Error).message}`,
            {
              details: { table },
              cause: error,
            },
          );
    this.options.log?.('clickhouse.writer-failed', { table, message: this.failure.message });
    if (this.state !== 'failed') this.transition('failed');
    this.stopTimers();
    for (const waiter of this.waiters.splice(0)) waiter.reject(this.failure);
  }

  private settleWaiters(): void {
    let lowest = Number.POSITIVE_INFINITY;
    for (const seq of this.outstanding) if (seq < lowest) lowest = seq;
    for (let i = 0; i < this.waiters.length;) {
      const waiter = this.waiters[i]!;
      if (waiter.target < lowest) {
        this.waiters.splice(i, 1);
        waiter.resolve();
      } else {
        i += 1;
      }
    }
  }

  /**
   * Inserts the `selection` of `batch`; on a data error, finds the refused rows and inserts the rest. Returns the
   * refused rows; throws on a fatal error (or when aborted).
   */
  private async insertOrIsolate(batch: Batch<Tag>, selection: Selection): Promise<Array<RejectedRow<Tag>>> {
    const count = countOf(selection);
    const failure = await this.insert(batch, selection, count);
    if (!failure) return [];
    if (count === 1) {
      const index = selection[0]![0];
      return [{ json: this.show(batch.buffer, batch.rows, index), tag: batch.tags[index], error: failure }];
    }
    const hint = rowHintOf(failure.cause);
    if (hint !== undefined && hint >= 1 && hint <= count) {
      // Trust but verify: the hinted row alone must fail too, or it was fine (and is now inserted).
      const [before, from] = splitAt(selection, hint - 1);
      const [alone, after] = splitAt(from, 1);
      const refused = await this.insertOrIsolate(batch, alone);
      const rest = await this.insertOrIsolate(batch, [...before, ...after]);
      return [...refused, ...rest];
    }
    const [left, right] = splitAt(selection, count >> 1);
    return [...(await this.insertOrIsolate(batch, left)), ...(await this.insertOrIsolate(batch, right))];
  }

  /** One INSERT, retried while retriable. Resolves undefined on success, or the data error; throws if fatal. */
  private async insert(batch: Batch<Tag>, selection: Selection, count: number): Promise<AgentStreamsError | undefined> {
    const { buffer, rows } = batch;
    const operation = `insert:${buffer.table}`;
    const whole = selection.length === 1 && selection[0]![0] === 0 && selection[0]![1] === batch.tags.length;
    const body = whole ? rows.parts : selection.flatMap(([from, to]) => sliceRows(rows, from, to));
    const sample = (): string => this.show(buffer, rows, selection[0]![0]);
    try {
      await withRetry(
        async () => {
          const started = performance.now();
          try {
            const result = await this.options.client.exec({
              query: buffer.sql,
              values: Readable.from(body, { objectMode: false }),
              abort_signal: this.abortController.signal,
            });
            // The response body is empty for an INSERT, but the socket is reused only once it has been read.
            for await (const _chunk of result.stream) void _chunk;
          } catch (error) {
            this.options.metrics?.sinkOperationErrors.inc({ operation });
            let kind: InsertFailureKind = this.abortController.signal.aborted ? 'fatal' : classifyInsertError(error);
            if (kind === 'fatal' && isMissingObject(error)) {
              this.missingSince ??= Date.now();
              if (Date.now() - this.missingSince < this.tuning.missingTableGraceMs) kind = 'retriable';
            }
            const why: Record<InsertFailureKind, string> = {
              retriable: 'failed; retrying with backoff',
              data: 'was refused as bad data',
              fatal:
                'failed and cannot succeed by retrying (check that the table and its columns exist and the user may insert)',
            };
            throw new AgentStreamsError(
              kind === 'data' ? ErrorCode.SINK_ROW_REJECTED : ErrorCode.SINK_INSERT_FAILED,
              `Insert of ${count} row(s) into ClickHouse table "${buffer.table}" ${why[kind]}: ${(error as Error).message.trim()}`,
              {
                retriable: kind === 'retriable',
                details: { table: buffer.table, kind, rows: count, sample: sample() },
                cause: error,
              },
            );
          }
          const ms = performance.now() - started;
          this.insertMsAverage = this.insertMsAverage * 0.8 + ms * 0.2;
          this.retryingUntil = 0;
          this.missingSince = undefined;
          this.options.metrics?.sinkOperationDuration.observe({ operation }, ms / 1000);
          this.stats.inserts += 1;
          this.stats.rowsInserted += count;
        },
        this.policy,
        {
          signal: this.abortController.signal,
          isRetriable: (error) => error instanceof AgentStreamsError && error.retriable,
          onRetry: (error, attempt, delayMs) => {
            this.stats.insertRetries += 1;
            this.retryingUntil = Date.now() + delayMs;
            this.options.log?.('clickhouse.insert-retry', {
              table: buffer.table,
              attempt,
              delayMs,
              message: (error as Error).message,
            });
          },
        },
      );
      return undefined;
    } catch (error) {
      if (error instanceof AgentStreamsError && error.code === ErrorCode.SINK_ROW_REJECTED) {
        // The batch error names the first row; a rejected row's own error should name that row.
        return new AgentStreamsError(ErrorCode.SINK_ROW_REJECTED, error.message, {
          details: {
            ...error.details,
            sample: count === 1 ? sample() : error.details.sample,
          },
          cause: error.cause,
        });
      }
      throw error;
    }
  }
}
