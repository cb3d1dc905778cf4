/**
 * Batched, bounded, retrying inserts into ClickHouse.
 *
 * Rows are encoded to JSONEachRow when they are written (so a bad row fails at the caller, synchronously, before it
 * can spoil a batch of thousands), buffered per table, and sent as one INSERT per batch when the batch is full (rows
 * or bytes) or old enough. Memory is bounded: rows buffered, queued and in flight together never exceed
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

/**
 * One table row: an object keyed by column name (checked against the table at write time). DateTime columns take
 * whole epoch seconds (docs/clickhouse.md). `object` rather than a record type so that row interfaces fit.
 */
export type Row = object;

export interface ClickHouseWriterTuning {
  /** A table's buffer is sent once it holds this many rows. */
  maxBatchRows?: number;
  /** … or this many bytes of JSON (counted as UTF-16 code units: bytes for ASCII). */
  maxBatchBytes?: number;
  /** … or when its oldest row has waited this long. */
  maxBatchAgeMs?: number;
  /** Rows buffered, queued and in flight, over all tables; beyond it `write()` signals backpressure. */
  maxBufferedRows?: number;
  /** The same bound in bytes of JSON. */
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
  /** The row as it was sent (one JSON object). */
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
  /** Epoch seconds only: a JS Date or ISO string is refused by 18.16, and ms would land in year 50,000. */
  dateTime: boolean;
  nullable: boolean;
}

interface TableBuffer<Tag> {
  table: string;
  columns: Column[];
  sql: string;
  lines: string[];
  tags: Array<Tag | undefined>;
  bytes: number;
  timer: NodeJS.Timeout | undefined;
}

interface Batch<Tag> {
  /** Sequence numbers of the sealed buffers it carries (several after merging): what `flush()` waits on. */
  seqs: number[];
  buffer: TableBuffer<Tag>;
  lines: string[];
  tags: Array<Tag | undefined>;
  bytes: number;
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
    // Column order is irrelevant (the INSERT names the columns and JSONEachRow matches by key), which is as well:
    // 18.16's system.columns has no `position`, and no `IN [array]` either, hence has().
    const sql = renderQuery(
      `SELECT table, name, type FROM system.columns
WHERE database = currentDatabase() AND has({tables:Array(String)}, table) AND default_kind NOT IN ('MATERIALIZED', 'ALIAS')`,
      { tables: [...new Set(options.tables)] },
    );
    const rows = await (
      await options.client.query({ query: sql, format: 'JSONEachRow' })
    ).json<{ table: string; name: string; type: string }>();
    const columns = new Map<string, Column[]>();
    for (const row of rows) {
      let list = columns.get(row.table);
      if (!list) columns.set(row.table, (list = []));
      list.push({
        name: row.name,
        dateTime: /^DateTime(?!64)/.test(row.type),
        nullable: row.type.startsWith('Nullable('),
      });
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
        sql: `INSERT INTO ${table} (${cols.map((c) => c.name).join(', ')}) FORMAT JSONEachRow`,
        lines: [],
        tags: [],
        bytes: 0,
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
    const lines = new Array<string>(rows.length);
    let bytes = 0;
    for (let i = 0; i < rows.length; i += 1) {
      const line = this.encode(buffer, rows[i]!);
      lines[i] = line;
      bytes += line.length;
    }
    if (this.bufferedByteCount > 0 && this.bufferedByteCount + bytes > this.tuning.maxBufferedBytes)
      throw this.backpressure(table, rows.length);
    for (const line of lines) {
      buffer.lines.push(line);
      buffer.tags.push(tag);
    }
    buffer.bytes += bytes;
    this.bufferedRowCount += rows.length;
    this.bufferedByteCount += bytes;
    this.stats.rowsWritten += rows.length;
    if (buffer.lines.length >= this.tuning.maxBatchRows || buffer.bytes >= this.tuning.maxBatchBytes) {
      this.seal(buffer);
    } else if (!buffer.timer) {
      buffer.timer = setTimeout(() => this.seal(buffer), this.tuning.maxBatchAgeMs);
      buffer.timer.unref();
    }
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

  private encode(buffer: TableBuffer<Tag>, row: Row): string {
    if (typeof row !== 'object' || row === null || Array.isArray(row))
      throw rowInvalid(buffer.table, row, 'expected an object keyed by column name');
    const fields = row as Readonly<Record<string, unknown>>;
    // Object.keys().length is ~6x cheaper than a for-in with hasOwn, and this runs for every row.
    const keys = Object.keys(fields).length;
    for (const column of buffer.columns) {
      const value = fields[column.name];
      if (value === undefined) {
        // 18.16 fills an omitted column with the type's zero value, not its DEFAULT: a silent wrong row.
        throw rowInvalid(buffer.table, row, `column "${column.name}" is missing (every column must be sent)`);
      }
      if (value === null && !column.nullable)
        throw rowInvalid(buffer.table, row, `column "${column.name}" is null but not Nullable`);
      if (
        column.dateTime &&
        !(typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= 4_294_967_295)
      ) {
        throw rowInvalid(
          buffer.table,
          row,
          `column "${column.name}" is a DateTime: send whole epoch seconds, got ${sampleOf(value)}`,
        );
      }
    }
    if (keys !== buffer.columns.length) {
      const known = new Set(buffer.columns.map((c) => c.name));
      const unknown = Object.keys(row).filter((key) => !known.has(key));
      throw rowInvalid(buffer.table, row, `unknown column(s) ${unknown.join(', ')}`);
    }
    try {
      return `${JSON.stringify(row)}\n`;
    } catch (error) {
      throw rowInvalid(buffer.table, row, `not serialisable to JSON (${(error as Error).message})`);
    }
  }

  private seal(buffer: TableBuffer<Tag>): void {
    if (buffer.timer) clearTimeout(buffer.timer);
    buffer.timer = undefined;
    if (buffer.lines.length === 0) return;
    const seq = this.nextSeq;
    this.nextSeq += 1;
    this.outstanding.add(seq);
    this.queue.push({ seqs: [seq], buffer, lines: buffer.lines, tags: buffer.tags, bytes: buffer.bytes });
    buffer.lines = [];
    buffer.tags = [];
    buffer.bytes = 0;
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
        first.lines.length + next.lines.length <= this.tuning.maxBatchRows &&
        first.bytes + next.bytes <= this.tuning.maxBatchBytes
      ) {
        first.lines = first.lines.concat(next.lines);
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
      const rejected = await this.insertOrIsolate(batch.buffer, batch.lines, batch.tags);
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
    this.bufferedRowCount -= batch.lines.length;
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
   * Inserts `lines`; on a data error, finds the refused rows and inserts the rest. Returns the refused rows; throws
   * on a fatal error (or when aborted).
   */
  private async insertOrIsolate(
    buffer: TableBuffer<Tag>,
    lines: string[],
    tags: Array<Tag | undefined>,
  ): Promise<Array<RejectedRow<Tag>>> {
    const failure = await this.insert(buffer, lines);
    if (!failure) return [];
    if (lines.length === 1) return [{ json: lines[0]!.trimEnd(), tag: tags[0], error: failure }];
    const hint = rowHintOf(failure.cause);
    if (hint !== undefined && hint >= 1 && hint <= lines.length) {
      // Trust but verify: the hinted row alone must fail too, or it was fine (and is now inserted).
      const i = hint - 1;
      const alone = await this.insertOrIsolate(buffer, [lines[i]!], [tags[i]]);
      const rest = await this.insertOrIsolate(
        buffer,
        [...lines.slice(0, i), ...lines.slice(i + 1)],
        [...tags.slice(0, i), ...tags.slice(i + 1)],
      );
      return [...alone, ...rest];
    }
    const mid = lines.length >> 1;
    const left = await this.insertOrIsolate(buffer, lines.slice(0, mid), tags.slice(0, mid));
    const right = await this.insertOrIsolate(buffer, lines.slice(mid), tags.slice(mid));
    return [...left, ...right];
  }

  /** One INSERT, retried while retriable. Resolves undefined on success, or the data error; throws if fatal. */
  private async insert(buffer: TableBuffer<Tag>, lines: string[]): Promise<AgentStreamsError | undefined> {
    const operation = `insert:${buffer.table}`;
    const body = lines.join('');
    try {
      await withRetry(
        async () => {
          const started = performance.now();
          try {
            const result = await this.options.client.exec({
              query: buffer.sql,
              values: Readable.from([body], { objectMode: false }),
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
              `Insert of ${lines.length} row(s) into ClickHouse table "${buffer.table}" ${why[kind]}: ${(error as Error).message.trim()}`,
              {
                retriable: kind === 'retriable',
                details: { table: buffer.table, kind, rows: lines.length, sample: sampleOf(lines[0]!.trimEnd()) },
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
          this.stats.rowsInserted += lines.length;
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
            sample: lines.length === 1 ? sampleOf(lines[0]!.trimEnd()) : error.details.sample,
          },
          cause: error.cause,
        });
      }
      throw error;
    }
  }
}
