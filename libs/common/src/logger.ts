import { context, isSpanContextValid, trace } from '@opentelemetry/api';
import bunyan from 'bunyan';
import fs from 'node:fs';
import os from 'node:os';
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

const REDACTED = '"[redacted]"';

/**
 * The JSON of an allow-listed field's value, or undefined to leave the field out. A string that
 * passes SAFE_ID holds no character JSON would escape, so it is quoted as it is.
 */
function safeJson(key: string, value: unknown): string | undefined {
  switch (typeof value) {
    case 'undefined':
      return undefined;
    case 'string':
      return SAFE_ID.test(value) ? `"${value}"` : REDACTED;
    case 'number':
      return Number.isFinite(value) ? String(value) : 'null';
    case 'boolean':
      return value ? 'true' : 'false';
    default:
      if (value === null) return 'null';
      if (key === 'project_id' && Array.isArray(value)) return `[${value.map((v) => safeJson(key, v) ?? 'null').join(',')}]`;
      return REDACTED;
  }
}

/** `"error_type":…,"stack":…,` of an error: its type and stack frames, never its message. */
function errorFields(e: { name?: unknown; stack?: unknown }): string {
  let out = `"error_type":${typeof e.name === 'string' && SAFE_ID.test(e.name) ? `"${e.name}"` : '"Error"'},`;
  if (typeof e.stack === 'string') {
    const frames = e.stack
      .split('\n')
      .filter((l) => l.trimStart().startsWith('at '))
      .join('\n');
    out += `"stack":${JSON.stringify(frames)},`;
  }
  return out;
}

/** How safeLine treats each key (bunyan's own fields, the allow-list, `err`), and its `"key":`. */
const enum Kind {
  Core,
  Safe,
  Err,
}
const KINDS = new Map<string, { kind: Kind; prefix: string }>([
  ...[...BUNYAN_CORE].map((k) => [k, { kind: Kind.Core, prefix: `"${k}":` }] as const),
  ...[...SAFE_FIELDS].map((k) => [k, { kind: Kind.Safe, prefix: `"${k}":` }] as const),
  ['err', { kind: Kind.Err, prefix: '' }],
]);

/** bunyan stamps every record with a new Date: lines of the same millisecond share one string. */
let isoMs = NaN;
let isoJson = '';
function timeJson(d: Date): string {
  const ms = d.getTime();
  if (ms !== isoMs) {
    isoMs = ms;
    isoJson = Number.isFinite(ms) ? `"${d.toISOString()}"` : 'null';
  }
  return isoJson;
}

/** JSON of the few strings bunyan's core fields repeat on every line (host, messages). */
const coreStrings = new Map<string, string>();
function coreJson(value: unknown): string | undefined {
  if (typeof value !== 'string') return value instanceof Date ? timeJson(value) : JSON.stringify(value);
  let json = coreStrings.get(value);
  if (json === undefined) {
    json = JSON.stringify(value);
    if (coreStrings.size >= 1000) coreStrings.clear();
    coreStrings.set(value, json);
  }
  return json;
}

/**
 * One log line (JSON, no newline) of a bunyan record: bunyan's core fields, the allow-listed ones
 * with values that do not look like identifiers redacted, and an `err` reduced to its type and stack
 * frames (an error message can quote input). Everything else is dropped. Built as text directly:
 * it runs for every line of every request.
 */
export function safeLine(rec: Record<string, unknown>, loggerName?: string): string {
  let line = loggerName === undefined ? '{' : `{"name":${coreJson(loggerName)},`;
  for (const key in rec) {
    const k = KINDS.get(key);
    if (k === undefined) continue;
    const value = rec[key];
    let json: string | undefined;
    if (k.kind === Kind.Core) {
      // A call site's own `name` field would replace the logger's name (and could be a person's name).
      if (key === 'name' && loggerName !== undefined) continue;
      json = coreJson(value);
    } else if (k.kind === Kind.Safe) {
      json = safeJson(key, value);
    } else if (value && typeof value === 'object') {
      line += errorFields(value as { name?: unknown; stack?: unknown });
    }
    if (json !== undefined) line += k.prefix + json + ',';
  }
  // Every field above ends with a comma (or the line is just '{').
  return line.length > 1 ? line.slice(0, -1) + '}' : '{}';
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
 * One bunyan raw stream: each record is filtered and serialised once, then written to every sink.
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
    readonly name: string,
  ) {
    streams.add(this);
  }

  write(rec: Record<string, unknown>): void {
    this.append(safeLine(rec, this.name), rec.level as number);
  }

  /** Queues one line already made safe (see lineWriter). */
  append(line: string, level: number): void {
    this.pending += line + '\n';
    if (level >= bunyan.ERROR || this.pending.length >= BATCH_CHARS) this.flush();
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
  const stream = new SafeStream(sinks, name);
  const log = bunyan.createLogger({ name, level, req_id: 'process', streams: [{ type: 'raw', level, stream: stream as unknown as NodeJS.WritableStream }] });
  ownStreams.set(log, stream);
  return log;
}

const ownStreams = new WeakMap<Logger, SafeStream>();

/**
 * A writer of one kind of `info` line, for a line written on every request (the gateway's access
 * line): `write(fields)` writes what `log.info(fields, msg)` would — the same bunyan fields, the
 * same allow-list and redaction, to the same sinks — without bunyan's record building (argument
 * and field copies, a generic walk over the record), which cost more than the rest of the line.
 * Only loggers made by createLogger (root loggers, not children) have one; `req_id` defaults to
 * "process" as on any other line.
 */
export function lineWriter(log: Logger, msg: string): (fields: Partial<Record<SafeField, string | number | boolean>>) => void {
  const stream = ownStreams.get(log);
  if (!stream) throw new Error('lineWriter needs a root logger made by createLogger');
  const head = `{"name":${JSON.stringify(stream.name)},"hostname":${JSON.stringify(os.hostname())},"pid":${process.pid},"level":${bunyan.INFO}`;
  const tail = `,"msg":${JSON.stringify(msg)},"time":`;
  return (fields) => {
    if (log.level() > bunyan.INFO) return;
    let line = fields.req_id === undefined ? `${head},"req_id":"process"` : head;
    for (const key in fields) {
      if (!SAFE_FIELDS.has(key)) continue;
      const json = safeJson(key, fields[key as SafeField]);
      if (json !== undefined) line += `,"${key}":${json}`;
    }
    line += traceFields();
    stream.append(`${line}${tail}${timeJson(new Date())},"v":0}`, bunyan.INFO);
  };
}

/**
 * `,"trace_id":…,"span_id":…` of the active span, as the bunyan instrumentation adds them to every
 * other line (ids are hex: no escaping); empty outside a trace or when tracing is not installed.
 */
function traceFields(): string {
  const span = trace.getSpan(context.active());
  if (!span) return '';
  const sc = span.spanContext();
  return isSpanContextValid(sc) ? `,"trace_id":"${sc.traceId}","span_id":"${sc.spanId}"` : '';
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
