import bunyan from 'bunyan';
import fs from 'node:fs';
import path from 'node:path';

/**
 * The only fields a log line may carry besides bunyan's own (SPEC §9). Anything else given to the
 * logger is dropped here, in one place, so no call site can leak a payload, a token or a name.
 */
export const SAFE_FIELDS: ReadonlySet<string> = new Set([
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
  'job',
  'attempt',
  'event',
  'scope',
]);

const BUNYAN_CORE = new Set(['v', 'level', 'name', 'hostname', 'pid', 'time', 'msg', 'src']);

/** Identifier-like values only: an e-mail address, a sentence or a blob in an id field is redacted. */
const SAFE_ID = /^[A-Za-z0-9_.:\-/ ]{0,160}$/;

function safeValue(key: string, value: unknown): unknown {
  if (value === undefined) return undefined;
  if (value === null || typeof value === 'number' || typeof value === 'boolean') return value;
  if (typeof value === 'string') return SAFE_ID.test(value) ? value : '[redacted]';
  if (key === 'project_id' && Array.isArray(value)) return value.map((v) => safeValue(key, v));
  return '[redacted]';
}

/**
 * Keeps bunyan's core fields and the allow-listed ones, redacts values that do not look like
 * identifiers, and reduces an `err` to its type and stack frames (an error message can quote input).
 */
export function sanitizeRecord(rec: Record<string, unknown>, loggerName?: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(rec)) {
    if (BUNYAN_CORE.has(key)) out[key] = value;
    else if (key === 'err' && value && typeof value === 'object') {
      const e = value as { name?: unknown; stack?: unknown };
      out.error_type = typeof e.name === 'string' && SAFE_ID.test(e.name) ? e.name : 'Error';
      if (typeof e.stack === 'string') {
        out.stack = e.stack
          .split('\n')
          .filter((l) => l.trimStart().startsWith('at '))
          .join('\n');
      }
    } else if (SAFE_FIELDS.has(key)) out[key] = safeValue(key, value);
  }
  // A call site's own `name` field would replace the logger's name (and could be a person's name).
  if (loggerName !== undefined) out.name = loggerName;
  return out;
}

/** One bunyan raw stream: each record is filtered and serialised once, then written to every sink. */
class SafeStream {
  constructor(
    private readonly sinks: NodeJS.WritableStream[],
    private readonly name: string,
  ) {}
  write(rec: Record<string, unknown>): void {
    const line = JSON.stringify(sanitizeRecord(rec, this.name)) + '\n';
    for (const sink of this.sinks) sink.write(line);
  }
}

export type Logger = bunyan;

const openFiles = new Set<fs.WriteStream>();

/** Flushes and closes every log file this process opened (call last, before exiting). */
export async function closeLogFiles(): Promise<void> {
  const files = [...openFiles];
  openFiles.clear();
  await Promise.all(files.map((f) => new Promise<void>((resolve) => f.end(() => resolve()))));
}

export interface LoggerOptions {
  /** Folder of the service's log file `<name>.log`; none = stdout only. */
  dir?: string;
  level?: bunyan.LogLevelString;
  /** Also write to stdout (default true outside tests). */
  stdout?: boolean;
  /** Extra sink, for tests. */
  sink?: NodeJS.WritableStream;
}

/** One logger (and one log file) per service; every line passes through the safe-field filter. */
export function createLogger(name: string, opts: LoggerOptions = {}): Logger {
  const level = opts.level ?? 'info';
  const sinks: NodeJS.WritableStream[] = [];
  if (opts.dir) {
    fs.mkdirSync(opts.dir, { recursive: true });
    const file = fs.createWriteStream(path.join(opts.dir, `${name}.log`), { flags: 'a' });
    openFiles.add(file);
    sinks.push(file);
  }
  if (opts.stdout ?? process.env.NODE_ENV !== 'test') sinks.push(process.stdout);
  if (opts.sink) sinks.push(opts.sink);
  // Lines not tied to a request (start, stop, jobs) say so with req_id "process"; request loggers
  // are children that set the real id.
  return bunyan.createLogger({ name, level, req_id: 'process', streams: [{ type: 'raw', level, stream: new SafeStream(sinks, name) as unknown as NodeJS.WritableStream }] });
}
