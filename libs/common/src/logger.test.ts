import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { closeLogFiles, createLogger, flushLogs, lineWriter, memorySink, sanitizeRecord } from './logger';

/** A stream sink (written asynchronously, like a file): `lines` fills as chunks arrive. */
function capture() {
  const sink = new PassThrough();
  const lines: Record<string, unknown>[] = [];
  let chunks = 0;
  sink.on('data', (d: Buffer) => {
    chunks++;
    d.toString()
      .split('\n')
      .filter(Boolean)
      .forEach((l) => lines.push(JSON.parse(l)));
  });
  return { sink, lines, chunks: () => chunks };
}

const tick = () => new Promise((r) => setImmediate(r));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('safe-field logger', () => {
  it('when a call site passes unsafe fields, then only allow-listed fields reach the sink', async () => {
    const { sink, lines } = capture();
    const log = createLogger('t', { stdout: false, sink });
    log.info({ user_id: 'u1', permit_id: 'p-1', email: 'a@b.c', token: 'eyJ.x.y', data: { signature: 'base64' }, name: 'Jane Doe', duration_ms: 12 }, 'hello');
    flushLogs();
    await tick();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ user_id: 'u1', permit_id: 'p-1', duration_ms: 12, msg: 'hello' });
    for (const k of ['email', 'token', 'data']) expect(lines[0]).not.toHaveProperty(k);
    expect(lines[0].name).toBe('t');
  });

  it('when an allow-listed field holds an e-mail address or a long blob, then its value is redacted', () => {
    const out = sanitizeRecord({ device_id: 'jane@example.com', user_id: 'x'.repeat(500), project_id: 'p1' });
    expect(out).toEqual({ device_id: '[redacted]', user_id: '[redacted]', project_id: 'p1' });
  });

  it('when an error is logged, then its message (which may quote input) is dropped and its type kept', () => {
    const err = new TypeError('bad value jane@example.com');
    const out = sanitizeRecord({ err });
    expect(out.error_type).toBe('TypeError');
    expect(JSON.stringify(out)).not.toContain('jane@example.com');
    expect(String(out.stack)).toContain('at ');
  });

  it('when a child logger carries req_id, then every line has it', async () => {
    const { sink, lines } = capture();
    createLogger('t', { stdout: false, sink }).child({ req_id: 'r-1' }).warn({ outcome: 'x' }, 'm');
    flushLogs();
    await tick();
    expect(lines[0]).toMatchObject({ req_id: 'r-1', outcome: 'x', level: 40 });
  });

  it('when lines are logged together, then they reach the sink in one write, in order, without being asked', async () => {
    const { sink, lines, chunks } = capture();
    const log = createLogger('t', { stdout: false, sink });
    for (let i = 0; i < 50; i++) log.info({ attempt: i }, 'line');
    await tick();
    expect(lines).toHaveLength(0); // batched: nothing written yet
    await sleep(200);
    expect(lines.map((l) => l.attempt)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(chunks()).toBe(1);
  });

  it('when an error is logged, then it and the lines before it are written at once', async () => {
    const { sink, lines } = capture();
    const log = createLogger('t', { stdout: false, sink });
    log.info({ attempt: 1 }, 'before');
    log.error({ err: new Error('boom') }, 'failed');
    await tick();
    expect(lines.map((l) => [l.level, l.msg])).toEqual([
      [30, 'before'],
      [50, 'failed'],
    ]);
  });

  it('when a record has core, safe, unknown and odd-typed fields, then its line holds only what is allowed', () => {
    const time = new Date('2026-11-28T10:00:00.123Z');
    const line = JSON.stringify(
      sanitizeRecord(
        {
          name: 'Jane Doe',
          hostname: 'h1',
          pid: 7,
          level: 30,
          msg: 'quote " and \\ backslash\nnew line',
          time,
          v: 0,
          duration_ms: Number.NaN,
          detailed: true,
          applied_count: 3,
          project_id: ['p1', 'a@b.c', 5],
          permit_id: null,
          device_id: { nested: 'x' },
          outcome: undefined,
          signature: 'data:image/png;base64,AAAA',
        },
        'svc',
      ),
    );
    expect(JSON.parse(line)).toEqual({
      name: 'svc',
      hostname: 'h1',
      pid: 7,
      level: 30,
      msg: 'quote " and \\ backslash\nnew line',
      time: '2026-11-28T10:00:00.123Z',
      v: 0,
      duration_ms: null,
      detailed: true,
      applied_count: 3,
      project_id: ['p1', '[redacted]', 5],
      permit_id: null,
      device_id: '[redacted]',
    });
  });

  it('when records carry times, then each line has its own time as toISOString gives it (invalid: null)', () => {
    const times = [
      new Date('2026-11-28T10:00:00.123Z'),
      new Date('2026-11-28T10:00:00.123Z'),
      new Date('2026-11-28T10:00:00.124Z'),
      new Date('1969-12-31T23:59:59.999Z'),
      new Date(Number.NaN),
    ];
    const written = times.map((time) => JSON.parse(JSON.stringify(sanitizeRecord({ level: 30, time }))) as { time: unknown });
    expect(written.map((w) => w.time)).toEqual(['2026-11-28T10:00:00.123Z', '2026-11-28T10:00:00.123Z', '2026-11-28T10:00:00.124Z', '1969-12-31T23:59:59.999Z', null]);
    expect(written.map((w) => w.time)).toEqual(times.map((t) => JSON.parse(JSON.stringify(t)) as unknown));
  });

  it('when a test sink is used, then lines() holds every line logged so far', () => {
    const m = memorySink();
    const log = createLogger('t', { stdout: false, sink: m.sink });
    log.info({ attempt: 1 }, 'a');
    log.child({ req_id: 'r-2' }).warn({ attempt: 2 }, 'b');
    expect(m.lines().map((l) => [l.attempt, l.req_id])).toEqual([
      [1, 'process'],
      [2, 'r-2'],
    ]);
    m.clear();
    expect(m.lines()).toEqual([]);
  });

  it('when a line writer writes fields, then the line is the one log.info would write, at the logger level only', () => {
    const m = memorySink();
    const log = createLogger('gateway', { stdout: false, sink: m.sink });
    const write = lineWriter(log, 'request');
    const fields = { req_id: 'r-9', event: 'http_access', endpoint: 'GET /permits/', status_code: 200, duration_ms: 3, user_id: 'jane@example.com', detailed: false };
    log.info(fields, 'request');
    write(fields);
    write({ event: 'no_id', attempt: 1, signature: 'data:,x', token: 'eyJ.a.b' } as never);
    log.level('warn');
    write(fields);
    const [viaBunyan, viaWriter, noId, ...more] = m.lines();
    expect(more).toEqual([]);
    const { time: t1, ...a } = viaBunyan;
    const { time: t2, ...b } = viaWriter;
    expect(b).toEqual(a);
    expect(new Date(String(t2)).getTime()).toBeGreaterThanOrEqual(new Date(String(t1)).getTime());
    expect(a).toMatchObject({ user_id: '[redacted]', detailed: false, level: 30, name: 'gateway', v: 0 });
    expect(noId).toMatchObject({ req_id: 'process', event: 'no_id', attempt: 1 });
    expect(noId).not.toHaveProperty('signature');
    expect(noId).not.toHaveProperty('token');
  });
});

describe('log file rotation', () => {
  /** The lines of `<dir>/<name>.log.<maxFiles>` … `.1`, then `<name>.log`: oldest first, as parsed JSON. */
  function readRotated(dir: string, name: string) {
    const files = fs.readdirSync(dir).filter((f) => f === `${name}.log` || f.startsWith(`${name}.log.`));
    const age = (f: string) => (f === `${name}.log` ? 0 : Number(f.slice(`${name}.log.`.length)));
    files.sort((a, b) => age(b) - age(a));
    return {
      files,
      sizes: files.map((f) => fs.statSync(path.join(dir, f)).size),
      lines: files.flatMap((f) =>
        fs
          .readFileSync(path.join(dir, f), 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as Record<string, unknown>),
      ),
    };
  }

  /** Writes `count` lines numbered by `attempt`, handing them to the file in batches of `batch`. */
  function writeLines(log: ReturnType<typeof createLogger>, count: number, batch: number) {
    for (let i = 0; i < count; i++) {
      log.info({ event: 'rotation_test', attempt: i, endpoint: 'GET /permits/', status_code: 200, duration_ms: 1 }, 'line');
      if (i % batch === batch - 1) flushLogs();
    }
  }

  it('when a process writes past LOG_MAX_BYTES, then the file is rotated to .1, .2…, logging goes on in a new file, and every line is in exactly one file, in order', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-rotate-'));
    const log = createLogger('rot', { dir, stdout: false, maxBytes: 4096, maxFiles: 20 });
    writeLines(log, 300, 10);
    await closeLogFiles();
    const { files, sizes, lines } = readRotated(dir, 'rot');
    // ~230 bytes a line: ~69 KB in 4 KiB files
    expect(files.length).toBeGreaterThanOrEqual(10);
    expect(files).toContain('rot.log');
    expect(files).toContain('rot.log.1');
    // A file is rotated after the write that reached the cap: at most one batch (10 lines) over it.
    for (const size of sizes) expect(size).toBeLessThan(4096 + 10 * 300);
    expect(lines.map((l) => l.attempt)).toEqual(Array.from({ length: 300 }, (_, i) => i));
    expect(lines.every((l) => l.msg === 'line' && l.name === 'rot')).toBe(true);
  });

  it('when rotations outnumber LOG_MAX_FILES, then only that many rotated files stay (the newest) and the current file still fills', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-rotate-'));
    const log = createLogger('cap', { dir, stdout: false, maxBytes: 2048, maxFiles: 3 });
    writeLines(log, 400, 5);
    await closeLogFiles();
    const { files, lines } = readRotated(dir, 'cap');
    expect(files).toEqual(['cap.log.3', 'cap.log.2', 'cap.log.1', 'cap.log']);
    // What is kept is the end of the sequence, with no gap.
    const kept = lines.map((l) => l.attempt as number);
    expect(kept.at(-1)).toBe(399);
    expect(kept).toEqual(Array.from({ length: kept.length }, (_, i) => 400 - kept.length + i));
    expect(kept.length).toBeLessThan(400);
  });

  it('when LOG_MAX_BYTES is 0, then the file is never rotated', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-rotate-'));
    const log = createLogger('norot', { dir, stdout: false, maxBytes: 0, maxFiles: 3 });
    writeLines(log, 100, 10);
    await closeLogFiles();
    const { files, lines } = readRotated(dir, 'norot');
    expect(files).toEqual(['norot.log']);
    expect(lines.map((l) => l.attempt)).toEqual(Array.from({ length: 100 }, (_, i) => i));
  });

  it('when a process starts with a log file already over the cap, then that file is rotated first and nothing is lost', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-rotate-'));
    fs.writeFileSync(path.join(dir, 'restart.log'), `${JSON.stringify({ attempt: -1 })}\n`.repeat(100));
    const log = createLogger('restart', { dir, stdout: false, maxBytes: 1024, maxFiles: 5 });
    writeLines(log, 3, 3);
    await closeLogFiles();
    const { files, lines } = readRotated(dir, 'restart');
    expect(files).toEqual(['restart.log.1', 'restart.log']);
    expect(lines.map((l) => l.attempt)).toEqual([...Array(100).fill(-1), 0, 1, 2]);
  });

  it('when the log file cannot be written, then the process keeps running and logging to its other sinks, and says so once on stderr', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-rotate-'));
    // A folder where the file should be: every open fails.
    fs.mkdirSync(path.join(dir, 'broken.log'));
    const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      const m = memorySink();
      const log = createLogger('broken', { dir, stdout: false, sink: m.sink, maxBytes: 4096, maxFiles: 2 });
      writeLines(log, 20, 5);
      await sleep(50);
      writeLines(log, 20, 5);
      await closeLogFiles();
      expect(m.lines().map((l) => l.attempt)).toEqual([...Array.from({ length: 20 }, (_, i) => i), ...Array.from({ length: 20 }, (_, i) => i)]);
      const said = stderr.mock.calls.map(([text]) => String(text)).filter((t) => t.includes('broken.log'));
      expect(said).toEqual([expect.stringMatching(/^broken: log file .*broken\.log failed \(.*\); retrying in 10 s\n$/)]);
    } finally {
      stderr.mockRestore();
    }
  });
});
