import { context, isSpanContextValid, trace } from '@opentelemetry/api';
import bunyan from 'bunyan';
import fs from 'node:fs';
import path from 'node:path';
import { createStream, type RotatingFileStream } from 'rotating-file-stream';

/**
 * The only fields a log line may carry besides bunyan's own (SPEC §9). Anything else given to the
 * logger is dropped here, in one place, so no call site can leak a payload, a token or a name.
 */
const SAFE_FIELD_NAMES = [
  'user_id',
  'project_id',
  'permit_id',
  'endpoint',
  'duration_ms',
  'status_code',
  'outcome',
  'conflict_count',
  'applied_count',
  'rejected_count',
  'permit_count',
  'detailed',
  'device_id',
  'error_type',
  'export_type',
  'req_id',
  'trace_id',
  'span_id',
  'job',
  'attempt',
  'event',
  'scope',
] as const;

export type SafeField = (typeof SAFE_FIELD_NAMES)[number];

export const SAFE_FIELDS: ReadonlySet<string> = new Set<string>(SAFE_FIELD_NAMES);

const BUNYAN_CORE = new Set(['v', 'level', 'name', 'hostname', 'pid', 'time', 'msg', 'src']);

/** Identifier-like values only: an e-mail address, a sentence or a blob in an id field is redacted. */
const SAFE_ID = /^[A-Za-z0-9_.:\-/ ]{0,160}$/;

const REDACTED = '[redacted]';

/** An allow-listed field's value as logged: identifiers as they are, anything else redacted. */
function safeValue(key: string, value: unknown): unknown {
  if (value === undefined || value === null || typeof value === 'number' || typeof value === 'boolean') return value;
  if (typeof value === 'string') return SAFE_ID.test(value) ? value : REDACTED;
  if (key === 'project_id' && Array.isArray(value)) return value.map((v) => safeValue(key, v));
  return REDACTED;
}

let lastTimeMs = Number.NaN; // no time is NaN: the first record always formats
let lastTimeIso = '';

/**
 * A record's time as JSON.stringify would write it (`toISOString`), made once per millisecond:
 * JSON.stringify reaching a Date through its `toJSON` cost more than the rest of the access line's
 * serialisation (docs/decisions/observability-stock.md).
 */
function isoTime(time: Date): string | null {
  const ms = time.getTime();
  if (Number.isNaN(ms)) return null; // what Date's toJSON gives
  if (ms !== lastTimeMs) {
    lastTimeMs = ms;
    lastTimeIso = time.toISOString();
  }
  return lastTimeIso;
}

/**
 * The record bunyan hands its streams, reduced to what SPEC §9 allows: bunyan's core fields, the
 * allow-listed ones with values that do not look like identifiers redacted, and an `err` reduced to
 * its type and stack frames (an error message can quote input). Everything else is dropped.
 */
export function sanitizeRecord(rec: Record<string, unknown>, loggerName?: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key in rec) {
    const value = rec[key];
    if (key === 'time' && value instanceof Date) out.time = isoTime(value);
    else if (BUNYAN_CORE.has(key)) out[key] = value;
    else if (SAFE_FIELDS.has(key)) out[key] = safeValue(key, value);
    else if (key === 'err' && value && typeof value === 'object') {
      const e = value as { name?: unknown; stack?: unknown };
      out.error_type = typeof e.name === 'string' && SAFE_ID.test(e.name) ? e.name : 'Error';
      if (typeof e.stack === 'string') {
        out.stack = e.stack
          .split('\n')
          .filter((l) => l.trimStart().startsWith('at '))
          .join('\n');
      }
    }
  }
  // A call site's own `name` field would replace the logger's name (and could be a person's name).
  if (loggerName !== undefined) out.name = loggerName;
  return out;
}

/** Where a batch of lines goes: a log file, stdout, a test's stream. */
interface Sink {
  write(text: string): unknown;
}

/** Pending text that forces a write at once. */
const BATCH_CHARS = 64 * 1024;
/** Longest a line waits to be written. */
const BATCH_MS = 20;

/**
 * One bunyan raw stream: each record is filtered (sanitizeRecord) and serialised once, then written
 * to every sink.
 * Lines are written in batches, one write per sink every BATCH_MS or BATCH_CHARS, whichever comes
 * first: a file write per line cost the gateway more CPU than all the rest of its middleware.
 * `error` and `fatal` lines go out at once with what is pending; closeLogFiles(), flushLogs() and
 * the end of the event loop write the rest.
 */
class SafeStream {
  private pending = '';
  private timer: NodeJS.Timeout | undefined;
  private readonly flushLater = () => {
    this.timer = undefined;
    this.flush();
  };

  constructor(
    private readonly sinks: Sink[],
    private readonly name: string,
  ) {
    streams.add(this);
  }

  /** bunyan's raw-stream call: `record` is the record it built (typed `object` by @types/bunyan). */
  write(record: object): void {
    const rec = record as Record<string, unknown>;
    this.pending += JSON.stringify(sanitizeRecord(rec, this.name)) + '\n';
    if ((rec.level as number) >= bunyan.ERROR || this.pending.length >= BATCH_CHARS) this.flush();
    // Unref'd: pending lines never keep a process alive ('beforeExit' below writes them).
    else if (!this.timer) this.timer = setTimeout(this.flushLater, BATCH_MS).unref();
  }

  flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (!this.pending) return;
    const text = this.pending;
    this.pending = '';
    for (const sink of this.sinks) sink.write(text);
  }
}

const streams = new Set<SafeStream>();
process.on('beforeExit', () => flushLogs());

/** Hands every pending log line to its sinks (they are written asynchronously, as any line). */
export function flushLogs(): void {
  for (const s of streams) s.flush();
}

export type Logger = bunyan;

/** Size at which a log file is rotated when the caller does not say (LOG_MAX_BYTES). */
export const DEFAULT_LOG_MAX_BYTES = 50 * 1024 * 1024;
/** Rotated files kept when the caller does not say (LOG_MAX_FILES). */
export const DEFAULT_LOG_MAX_FILES = 5;
/** After a log file fails (disk full, file removed, a rotation raced by another process), how long before it is opened again. */
const REOPEN_AFTER_MS = 10_000;

/**
 * A process's log file `<dir>/<name>.log`, rotated by size the way logrotate does it
 * (rotating-file-stream's classical mode): once the file reaches `maxBytes` (plus at most the batch
 * that crossed it) it becomes `<name>.log.1`, `.1` becomes `.2` and so on, `.<maxFiles>` is dropped,
 * and writing goes on in a new `<name>.log`; `maxBytes` 0 never rotates. One process per file:
 * two processes rotating one file rename over each other's files (a test run here lost a batch).
 * A failed file (ENOSPC, EACCES…) never stops the process: it says so once on stderr, its lines go
 * to the other sinks only, and it is opened again REOPEN_AFTER_MS later.
 */
class LogFile {
  private stream: RotatingFileStream | undefined;
  private failedAt = 0;

  constructor(
    private readonly dir: string,
    private readonly name: string,
    private readonly maxBytes: number,
    private readonly maxFiles: number,
  ) {
    this.stream = this.open();
  }

  private open(): RotatingFileStream {
    const rotation = this.maxBytes > 0 ? { size: `${this.maxBytes}B`, rotate: this.maxFiles } : {};
    const stream = createStream(`${this.name}.log`, { path: this.dir + path.sep, ...rotation });
    stream.on('error', (err) => {
      if (this.stream !== stream) return;
      this.stream = undefined;
      this.failedAt = Date.now();
      process.stderr.write(`${this.name}: log file ${path.join(this.dir, `${this.name}.log`)} failed (${err.message}); retrying in ${REOPEN_AFTER_MS / 1000} s\n`);
    });
    return stream;
  }

  write(text: string): boolean {
    if (!this.stream && Date.now() - this.failedAt >= REOPEN_AFTER_MS) this.stream = this.open();
    return this.stream?.write(text) ?? true;
  }

  /** Writes what is queued and closes the file. */
  end(): Promise<void> {
    const stream = this.stream;
    this.stream = undefined;
    this.failedAt = Infinity;
    return new Promise((resolve) => (stream && !stream.destroyed ? stream.end(() => resolve()) : resolve()));
  }
}

const openFiles = new Set<LogFile>();

/** Flushes and closes every log file this process opened (call last, before exiting). */
export async function closeLogFiles(): Promise<void> {
  flushLogs();
  const files = [...openFiles];
  openFiles.clear();
  await Promise.all(files.map((f) => f.end()));
}

export interface LoggerOptions {
  /** Folder of the service's log file `<name>.log`; none = stdout only. */
  dir?: string;
  level?: bunyan.LogLevelString;
  /** Size at which the log file is rotated, 0 = never (LOG_MAX_BYTES; default DEFAULT_LOG_MAX_BYTES). */
  maxBytes?: number;
  /** Rotated files kept, `<name>.log.1` the newest (LOG_MAX_FILES; default DEFAULT_LOG_MAX_FILES). */
  maxFiles?: number;
  /** Also write to stdout (default true outside tests). */
  stdout?: boolean;
  /** Extra sink, for tests. */
  sink?: NodeJS.WritableStream;
}

/** One logger (and one log file) per service; every line passes through the safe-field filter. */
export function createLogger(name: string, opts: LoggerOptions = {}): Logger {
  const level = opts.level ?? 'info';
  const sinks: Sink[] = [];
  if (opts.dir) {
    fs.mkdirSync(opts.dir, { recursive: true });
    const file = new LogFile(opts.dir, name, opts.maxBytes ?? DEFAULT_LOG_MAX_BYTES, opts.maxFiles ?? DEFAULT_LOG_MAX_FILES);
    openFiles.add(file);
    sinks.push(file);
  }
  if (opts.stdout ?? process.env.NODE_ENV !== 'test') sinks.push(process.stdout);
  if (opts.sink) sinks.push(opts.sink);
  // Lines not tied to a request (start, stop, jobs) say so with req_id "process"; request lines
  // set the real id (as a field, or through a child logger).
  return bunyan.createLogger({ name, level, req_id: 'process', streams: [{ type: 'raw', level, stream: new SafeStream(sinks, name) }] });
}

/**
 * A writer of one kind of `info` line (the gateway's access line, a gRPC call's line):
 * `write(fields)` is `log.info(fields, msg)` with the ids of the active span added, so the line
 * carries them whether or not bunyan's OpenTelemetry instrumentation is installed.
 */
export function lineWriter(log: Logger, msg: string): (fields: Partial<Record<SafeField, string | number | boolean>>) => void {
  return (fields) => {
    if (log.level() > bunyan.INFO) return;
    const span = trace.getSpan(context.active());
    const sc = span?.spanContext();
    log.info(sc && isSpanContextValid(sc) ? { ...fields, trace_id: sc.traceId, span_id: sc.spanId } : fields, msg);
  };
}

/** A sink keeping every line as parsed JSON, for tests: `lines()` first hands over pending lines. */
export function memorySink(): { sink: NodeJS.WritableStream; lines(): Record<string, unknown>[]; clear(): void } {
  const kept: Record<string, unknown>[] = [];
  const sink = {
    write(text: string | Buffer): boolean {
      for (const line of String(text).split('\n')) if (line) kept.push(JSON.parse(line) as Record<string, unknown>);
      return true;
    },
  };
  return {
    sink: sink as unknown as NodeJS.WritableStream,
    lines: () => {
      flushLogs();
      return kept;
    },
    clear: () => {
      flushLogs();
      kept.length = 0;
    },
  };
}
