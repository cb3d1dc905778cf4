/**
 * File replay: JSON Lines or CSV rows → Avro records in `market.events`, keyed by symbol, produced in batches.
 *
 * Every row is validated against its Avro schema before it is produced. Nothing is lost in silence: an invalid row
 * is counted and listed with its line number and field paths, and either skipped (`onInvalid: 'skip'`, the default)
 * or the run fails (`'fail'`). In fail mode the file is checked completely first, so a failing run produces nothing.
 */
import { createReadStream, createWriteStream, statSync, type WriteStream } from 'node:fs';
import { extname } from 'node:path';
import { createInterface } from 'node:readline';
import type { Message } from 'kafkajs';
import avro from 'avsc';
import type { Config } from '../runtime/config/index.ts';
import { AgentStreamsError, ErrorCode } from '../runtime/errors.ts';
import { describeJsonError, parseJson } from './json-text.ts';
import {
  formatProblems,
  marketRecordName,
  marketRecordNames,
  MarketSchemas,
  type FieldProblem,
  type MarketRecordName,
} from './market-records.ts';
import { openMarketProducer, type MarketProducer, type MarketProducerOptions } from './market-producer.ts';

export const ReplayFormat = { jsonl: 'jsonl', csv: 'csv' } as const;
export type ReplayFormat = keyof typeof ReplayFormat;

export const OnInvalid = { skip: 'skip', fail: 'fail' } as const;
export type OnInvalid = keyof typeof OnInvalid;

export interface ReplayOptions extends Omit<MarketProducerOptions, 'clientId'> {
  file: string;
  /** Default: from the extension (.csv → csv; .jsonl, .ndjson, .json → jsonl). */
  format?: ReplayFormat;
  /** Record type of every row; without it each row names its own in a `type` field or column. */
  type?: string;
  /** Default 'skip'. */
  onInvalid?: OnInvalid;
  /** Also write every invalid row (line, problems, raw text) to this JSON Lines file. */
  rejectsFile?: string;
  /** Rows per produce request. Default 1000. */
  batchSize?: number;
  /** Validate only; produce nothing and need no Kafka or registry. */
  dryRun?: boolean;
  /** Where the progress bar goes; default stderr when it is a terminal, false for none. */
  progress?: NodeJS.WriteStream | false;
  /** How many invalid rows the summary lists in full (all are counted). Default 1000. */
  maxListed?: number;
  /** Produce through this producer (left open) instead of opening one. */
  producer?: MarketProducer;
}

export interface InvalidRow {
  /** 1-based line of the file where the row starts. */
  line: number;
  type?: MarketRecordName;
  problems: FieldProblem[];
}

export interface ReplaySummary {
  file: string;
  format: ReplayFormat;
  topic: string | undefined;
  /** Data rows read (not counting a CSV header or blank lines). */
  rows: number;
  /** Rows produced (a story about two symbols is one row, two Kafka records). */
  produced: number;
  /** Kafka records produced. */
  messages: number;
  invalidCount: number;
  /** The first `maxListed` invalid rows, in file order. */
  invalid: InvalidRow[];
  byType: Record<MarketRecordName, number>;
  bytes: number;
  seconds: number;
  rowsPerSecond: number;
}

interface RawRow {
  line: number;
  text: string;
  /** The row as an object, or why it could not be read as one. */
  value: Record<string, unknown> | { problem: FieldProblem };
}

// ---------------------------------------------------------------------------------------------------------------
// Reading rows

/** RFC 4180 records from physical lines: quoted fields may hold commas, doubled quotes and line breaks. */
class CsvRecords {
  private cells: string[] = [];
  private cell = '';
  private inQuotes = false;
  private startLine = 0;
  private text = '';

  /** Feeds one line (without its line break); returns the record once complete. */
  push(
    line: string,
    lineNo: number,
  ): { line: number; text: string; cells: string[] } | { line: number; text: string; error: string } | undefined {
    if (this.inQuotes) {
      this.cell += '\n';
      this.text += `\n${line}`;
    } else {
      this.cells = [];
      this.cell = '';
      this.startLine = lineNo;
      this.text = line;
    }
    let fresh = !this.inQuotes;
    let closed = false;
    for (let i = 0; i < line.length; i += 1) {
      const ch = line[i]!;
      if (this.inQuotes) {
        if (ch !== '"') this.cell += ch;
        else if (line[i + 1] === '"') {
          this.cell += '"';
          i += 1;
        } else {
          this.inQuotes = false;
          closed = true;
        }
      } else if (ch === ',') {
        this.cells.push(this.cell);
        this.cell = '';
        fresh = true;
        closed = false;
      } else if (ch === '"' && fresh) {
        this.inQuotes = true;
        fresh = false;
      } else if (closed) {
        const error = `unexpected ${JSON.stringify(ch)} after a closing quote in column ${this.cells.length + 1} (quote the whole cell, and double quotes inside it)`;
        this.inQuotes = false;
        return { line: this.startLine, text: this.text, error };
      } else {
        this.cell += ch;
        fresh = false;
      }
    }
    if (this.inQuotes) return undefined;
    this.cells.push(this.cell);
    return { line: this.startLine, text: this.text, cells: this.cells };
  }

  /** The start line of a quoted field the file never closed, if any. */
  unterminated(): { line: number; text: string } | undefined {
    return this.inQuotes ? { line: this.startLine, text: this.text } : undefined;
  }
}

/** Array cells are split on ';' (the cell separator is taken): `2.02;5.02`. */
const CSV_ARRAY_SEPARATOR = ';';

function unionParts(type: avro.Type): { nullable: boolean; inner: avro.Type } {
  if (type instanceof avro.types.UnwrappedUnionType || type instanceof avro.types.WrappedUnionType) {
    const rest = type.types.filter((t) => t.typeName !== 'null');
    return { nullable: rest.length < type.types.length, inner: rest.length === 1 ? rest[0]! : type };
  }
  return { nullable: false, inner: type };
}

/** A cell as the schema's type, or the raw text when it does not convert, so validation names the field. */
function convertCell(type: avro.Type, cell: string): unknown {
  switch (type.typeName) {
    case 'long':
    case 'int':
      return /^\s*-?\d+\s*$/.test(cell) ? Number(cell) : cell;
    case 'double':
    case 'float': {
      const n = Number(cell);
      return cell.trim() !== '' && Number.isFinite(n) ? n : cell;
    }
    case 'boolean':
      return cell === 'true' ? true : cell === 'false' ? false : cell;
    case 'array':
      return cell === ''
        ? []
        : cell
            .split(CSV_ARRAY_SEPARATOR)
            .map((item) => convertCell((type as avro.types.ArrayType).itemsType, item.trim()));
    default:
      return cell;
  }
}

/**
 * A CSV row as a record of `type`. Columns name fields; nested record fields use dotted names (`insider.shares`).
 * An empty cell means null for an optional field and "use the default" (or "missing") for the others.
 */
function csvRecord(type: avro.types.RecordType, row: Map<string, string>, prefix = ''): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const field of type.fields) {
    const path = `${prefix}${field.name}`;
    const { nullable, inner } = unionParts(field.type);
    if (inner instanceof avro.types.RecordType) {
      const columns = [...row.keys()].filter((c) => c.startsWith(`${path}.`));
      if (columns.every((c) => row.get(c) === '')) {
        if (nullable) out[field.name] = null;
        continue;
      }
      out[field.name] = csvRecord(inner, row, `${path}.`);
      continue;
    }
    const cell = row.get(path);
    if (cell === undefined) continue;
    if (cell === '') {
      if (nullable) out[field.name] = null;
      else if (inner.typeName === 'string' && field.defaultValue() === undefined) out[field.name] = '';
      else if (inner.typeName === 'array') out[field.name] = [];
      continue;
    }
    out[field.name] = convertCell(inner, cell);
  }
  if (prefix === '') {
    // Columns that name no field are kept, so validation reports them rather than dropping their data.
    const known = new Set<string>();
    const collect = (t: avro.types.RecordType, p: string): void => {
      for (const f of t.fields) {
        const { inner } = unionParts(f.type);
        if (inner instanceof avro.types.RecordType) collect(inner, `${p}${f.name}.`);
        else known.add(`${p}${f.name}`);
      }
    };
    collect(type, '');
    for (const [column, cell] of row) if (!known.has(column) && column !== 'type' && cell !== '') out[column] = cell;
  }
  return out;
}

async function* readRows(file: string, format: ReplayFormat, onBytes: (bytes: number) => void): AsyncGenerator<RawRow> {
  const input = createReadStream(file);
  const lines = createInterface({ input, crlfDelay: Infinity });
  let lineNo = 0;
  let header: string[] | undefined;
  const csv = new CsvRecords();
  try {
    for await (const raw of lines) {
      lineNo += 1;
      onBytes(input.bytesRead);
      const line = lineNo === 1 ? raw.replace(/^\uFEFF/, '') : raw;
      if (format === 'jsonl') {
        if (line.trim() === '') continue;
        const parsed = parseJson(line);
        if (!parsed.ok) {
          yield {
            line: lineNo,
            text: line,
            value: {
              problem: { path: '', message: `not valid JSON: ${describeJsonError({ ...parsed.error, line: lineNo })}` },
            },
          };
        } else if (parsed.value === null || typeof parsed.value !== 'object' || Array.isArray(parsed.value)) {
          yield { line: lineNo, text: line, value: { problem: { path: '', message: 'a row must be a JSON object' } } };
        } else {
          yield { line: lineNo, text: line, value: parsed.value as Record<string, unknown> };
        }
        continue;
      }
      if (!header && line.trim() === '') continue;
      if (header && line === '' && csv.unterminated() === undefined) continue;
      const record = csv.push(line, lineNo);
      if (!record) continue;
      if ('error' in record) {
        yield {
          line: record.line,
          text: record.text,
          value: { problem: { path: '', message: `not valid CSV: ${record.error}` } },
        };
        continue;
      }
      if (!header) {
        header = record.cells.map((c) => c.trim());
        const duplicate = header.find((c, i) => header!.indexOf(c) !== i);
        if (duplicate !== undefined)
          throw new AgentStreamsError(
            ErrorCode.INPUT_UNREADABLE,
            `${file}: the CSV header names column "${duplicate}" twice.`,
          );
        continue;
      }
      if (record.cells.length !== header.length) {
        yield {
          line: record.line,
          text: record.text,
          value: {
            problem: { path: '', message: `has ${record.cells.length} cells, the header has ${header.length} columns` },
          },
        };
        continue;
      }
      yield {
        line: record.line,
        text: record.text,
        value: Object.fromEntries(header.map((column, i) => [column, record.cells[i]!])),
      };
    }
    const open = csv.unterminated();
    if (open)
      yield {
        line: open.line,
        text: open.text,
        value: { problem: { path: '', message: 'not valid CSV: a quoted cell is never closed' } },
      };
  } finally {
    lines.close();
    input.destroy();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Rows → records

interface Checked {
  line: number;
  text: string;
  type?: MarketRecordName;
  value?: Record<string, unknown>;
  problems: FieldProblem[];
}

function checkRow(
  row: RawRow,
  format: ReplayFormat,
  fixedType: MarketRecordName | undefined,
  schemas: MarketSchemas,
): Checked {
  const base = { line: row.line, text: row.text };
  if ('problem' in row.value) return { ...base, problems: [row.value.problem as FieldProblem] };
  const { type: declared, ...fields } = row.value;
  let type = fixedType;
  if (declared !== undefined && declared !== '') {
    const named = typeof declared === 'string' ? marketRecordName(declared) : undefined;
    if (!named)
      return {
        ...base,
        problems: [
          {
            path: 'type',
            message: `${JSON.stringify(declared)} is not a record type; expected one of ${marketRecordNames.join(', ')}`,
          },
        ],
      };
    if (fixedType && named !== fixedType)
      return {
        ...base,
        problems: [{ path: 'type', message: `says ${named}, but the replay was started with --type ${fixedType}` }],
      };
    type = named;
  }
  if (!type)
    return {
      ...base,
      problems: [
        { path: 'type', message: `missing: give each row a type (${marketRecordNames.join(', ')}) or pass --type` },
      ],
    };
  const value =
    format === 'csv'
      ? csvRecord(schemas.typeOf(type), new Map(Object.entries(fields as Record<string, string>)))
      : fields;
  schemas.normalize(type, value);
  return { ...base, type, value, problems: schemas.validate(type, value) };
}

function formatFor(file: string, format: ReplayFormat | undefined): ReplayFormat {
  if (format !== undefined) {
    if (!Object.hasOwn(ReplayFormat, format))
      throw new AgentStreamsError(ErrorCode.CONNECTOR_OPTIONS_INVALID, `format must be jsonl or csv, got "${format}".`);
    return format;
  }
  const ext = extname(file).toLowerCase();
  if (ext === '.csv') return 'csv';
  if (ext === '.jsonl' || ext === '.ndjson' || ext === '.json') return 'jsonl';
  throw new AgentStreamsError(
    ErrorCode.CONNECTOR_OPTIONS_INVALID,
    `Cannot tell the format of ${file} from its extension; pass --format jsonl or --format csv.`,
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Progress

function progressBar(
  stream: NodeJS.WriteStream,
  file: string,
  totalBytes: number,
): { update(rows: number, bytes: number, invalid: number): void; done(): void } {
  const started = performance.now();
  let last = 0;
  const draw = (rows: number, bytes: number, invalid: number): void => {
    const seconds = Math.max(0.001, (performance.now() - started) / 1000);
    const fraction = totalBytes > 0 ? Math.min(1, bytes / totalBytes) : 1;
    const width = 24;
    const filled = Math.round(fraction * width);
    // Numbers first, file name last: a narrow terminal cuts the name, not the progress.
    const line = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(fraction * 100).toFixed(1)}%  ${rows.toLocaleString('en-US')} rows  ${Math.round(rows / seconds).toLocaleString('en-US')} rows/s${invalid > 0 ? `  ${invalid} invalid` : ''}  ${file}`;
    // A pseudo-terminal may report 0 columns: then assume a common width.
    stream.write(`\r\x1b[K${line.slice(0, Math.max(40, (stream.columns || 120) - 1))}`);
  };
  return {
    update(rows, bytes, invalid) {
      const now = performance.now();
      if (now - last < 200) return;
      last = now;
      draw(rows, bytes, invalid);
    },
    done() {
      stream.write('\r\x1b[K');
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The replay

/** Validates every row of `file` and produces the valid ones; see the module comment for invalid rows. */
export async function replayFile(config: Config, options: ReplayOptions): Promise<ReplaySummary> {
  const { file } = options;
  const format = formatFor(file, options.format);
  const onInvalid = options.onInvalid ?? 'skip';
  if (!Object.hasOwn(OnInvalid, onInvalid))
    throw new AgentStreamsError(
      ErrorCode.CONNECTOR_OPTIONS_INVALID,
      `onInvalid must be skip or fail, got "${onInvalid}".`,
    );
  const fixedType = options.type === undefined ? undefined : marketRecordName(options.type);
  if (options.type !== undefined && !fixedType) {
    throw new AgentStreamsError(
      ErrorCode.CONNECTOR_OPTIONS_INVALID,
      `--type "${options.type}" is not a record type; expected one of ${marketRecordNames.join(', ')}.`,
    );
  }
  const batchSize = options.batchSize ?? 1000;
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new AgentStreamsError(
      ErrorCode.CONNECTOR_OPTIONS_INVALID,
      `batchSize must be a whole number >= 1, got ${batchSize}.`,
    );
  const maxListed = options.maxListed ?? 1000;
  let totalBytes: number;
  try {
    const stat = statSync(file);
    if (!stat.isFile()) throw new Error('not a regular file');
    totalBytes = stat.size;
  } catch (error) {
    throw new AgentStreamsError(ErrorCode.INPUT_UNREADABLE, `Cannot read ${file}: ${(error as Error).message}.`, {
      cause: error,
      details: { file },
    });
  }
  const schemas = options.producer?.schemas ?? new MarketSchemas();
  const progressStream =
    options.progress === undefined ? (process.stderr.isTTY ? process.stderr : false) : options.progress;

  const rejects: WriteStream | undefined = options.rejectsFile ? createWriteStream(options.rejectsFile) : undefined;
  const pass = async (produce: MarketProducer | undefined): Promise<ReplaySummary> => {
    const started = performance.now();
    const byType = Object.fromEntries(marketRecordNames.map((n) => [n, 0])) as Record<MarketRecordName, number>;
    const invalid: InvalidRow[] = [];
    let invalidCount = 0;
    let rows = 0;
    let produced = 0;
    let messages = 0;
    let bytes = 0;
    let batch: Message[] = [];
    let batchRows = 0;
    let failure: unknown;
    const inflight: Array<Promise<void>> = [];
    const bar = progressStream ? progressBar(progressStream, file, totalBytes) : undefined;

    const reject = (checked: Checked): void => {
      invalidCount += 1;
      const row: InvalidRow = {
        line: checked.line,
        ...(checked.type ? { type: checked.type } : {}),
        problems: checked.problems,
      };
      if (invalid.length < maxListed) invalid.push(row);
      rejects?.write(`${JSON.stringify({ ...row, raw: checked.text })}\n`);
    };
    const flush = async (): Promise<void> => {
      if (!produce || batch.length === 0) return;
      const sent = batch;
      const sentRows = batchRows;
      batch = [];
      batchRows = 0;
      inflight.push(
        produce.send(sent).then(
          () => {
            produced += sentRows;
            messages += sent.length;
          },
          (error: unknown) => void (failure ??= error),
        ),
      );
      while (inflight.length > 2) await inflight.shift();
      if (failure) throw failure;
    };

    try {
      for await (const row of readRows(file, format, (b) => (bytes = b))) {
        rows += 1;
        const checked = checkRow(row, format, fixedType, schemas);
        if (checked.problems.length === 0 && produce) {
          try {
            batch.push(...produce.encode(checked.type!, checked.value));
            batchRows += 1;
          } catch (error) {
            // Valid here but refused by the registry's schema or the size limit: still the row's problem.
            const problems = (error as AgentStreamsError).details?.problems as FieldProblem[] | undefined;
            if ((error as AgentStreamsError).code !== ErrorCode.RECORD_INVALID || !problems) throw error;
            checked.problems = problems;
          }
        }
        if (checked.problems.length > 0) {
          reject(checked);
          if (produce && onInvalid === 'fail') {
            throw new AgentStreamsError(
              ErrorCode.RECORD_INVALID,
              `${file} line ${checked.line}: ${formatProblems(checked.problems)}.`,
              { details: { invalid } },
            );
          }
        } else {
          byType[checked.type!] += 1;
          if (!produce) produced += 1;
        }
        if (batchRows >= batchSize) await flush();
        bar?.update(rows, bytes, invalidCount);
      }
      await flush();
      await Promise.all(inflight);
      if (failure) throw failure;
    } finally {
      bar?.done();
    }
    const seconds = (performance.now() - started) / 1000;
    return {
      file,
      format,
      topic: produce?.topic,
      rows,
      produced,
      messages,
      invalidCount,
      invalid,
      byType,
      bytes: totalBytes,
      seconds,
      rowsPerSecond: Math.round(rows / Math.max(seconds, 0.001)),
    };
  };

  try {
    if (options.dryRun) return await pass(undefined);
    if (onInvalid === 'fail') {
      // The whole file is checked before anything is produced, so a failing run leaves the topic untouched.
      const check = await pass(undefined);
      if (check.invalidCount > 0) {
        throw new AgentStreamsError(
          ErrorCode.RECORD_INVALID,
          `${check.invalidCount} of ${check.rows} rows of ${file} are invalid (first: line ${check.invalid[0]!.line}: ${formatProblems(check.invalid[0]!.problems)}); nothing was produced.`,
          { details: { invalidCount: check.invalidCount, invalid: check.invalid } },
        );
      }
    }
    const producer = options.producer ?? (await openMarketProducer(config, { ...options, clientId: 'replay' }));
    try {
      return await pass(producer);
    } finally {
      if (!options.producer) await producer.close();
    }
  } finally {
    if (rejects) await new Promise<void>((done) => rejects.end(done));
  }
}
