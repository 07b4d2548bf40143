import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { renderPermitPdf } from './pdf';
import { pdfText } from './text';
import { Writable } from 'node:stream';
import { samplePermit } from './samples';
import { Collect, endlessSamples, from, settled, Stalled } from './stream-testing';
import type { ExportPermit } from './types';
import { pdfEntryName, streamPdfZip } from './zip';

/*
 * These tests open what the renderers produce: `unzip` lists and extracts the archive, poppler's
 * `pdftotext` reads each PDF back (Debian packages unzip and poppler-utils).
 */

for (const tool of ['unzip', 'pdftotext']) {
  try {
    execFileSync('which', [tool]);
  } catch {
    throw new Error(`${tool} is needed by these tests: apt-get install -y unzip poppler-utils`);
  }
}

const LONG_TAIL = 'The description ends with this closing sentence.';

function richPermit(): ExportPermit {
  const p = samplePermit(1, { descriptionRepeat: 40, auditRows: 60 });
  return {
    ...p,
    title: 'Hot work on the boiler feed line',
    description: `${p.description} ${LONG_TAIL}`,
    isolation_points: [
      { ...p.isolation_points[0], name: 'Main breaker MCC-3', lock_ids: ['L-17', 'L-18'] },
      { ...p.isolation_points[1], name: 'Steam valve V-12', status: 'isolated', verified_by: undefined, verified_at: undefined },
    ],
  };
}

function plainPermit(i: number): ExportPermit {
  return {
    ...samplePermit(i),
    title: `Scaffold inspection ${i}`,
    status: 'draft',
    user_names: undefined,
    workflow_steps: [],
    isolation_points: [],
    closeout: undefined,
    audit: [],
  };
}

function unzipEntries(zip: Buffer): { names: string[]; read(name: string): Buffer; close(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'ptw-zip-test-'));
  const file = join(dir, 'export.zip');
  writeFileSync(file, zip);
  const names = execFileSync('unzip', ['-Z1', file], { encoding: 'utf8' }).trim().split('\n');
  return {
    names,
    read: (name) => execFileSync('unzip', ['-p', file, name], { maxBuffer: 64 << 20 }),
    close: () => rmSync(dir, { recursive: true, force: true }),
  };
}

const pdfToText = (pdf: Buffer) => execFileSync('pdftotext', ['-layout', '-', '-'], { input: pdf, encoding: 'utf8' });
const squash = (s: string) => s.replace(/\s+/g, ' ');

describe('streamPdfZip', () => {
  const permits = [richPermit(), plainPermit(2), plainPermit(3)];
  let zip: Buffer;
  let result: { permitCount: number; bytes: number };
  let entries: ReturnType<typeof unzipEntries>;

  beforeAll(async () => {
    const out = new Collect();
    result = await streamPdfZip(from(permits), out);
    zip = out.buffer;
    entries = unzipEntries(zip);
    // The first PDF of a process loads and parses its fonts.
  }, 60_000);
  afterAll(() => entries.close());

  it('when three permits are streamed, then the ZIP holds one PTW_<number>.pdf each and the reported size is the bytes written', () => {
    expect(entries.names).toEqual(['PTW_PTW-2025-000001.pdf', 'PTW_PTW-2025-000002.pdf', 'PTW_PTW-2025-000003.pdf']);
    expect(result).toEqual({ permitCount: 3, bytes: zip.length });
  });

  it('when a PDF is read back, then it shows the number, title, status and every section', () => {
    const text = pdfToText(entries.read('PTW_PTW-2025-000001.pdf'));
    expect(text).toContain('PTW-2025-000001');
    expect(text).toContain('Hot work on the boiler feed line');
    expect(text).toContain('Status: ACTIVE');
    for (const section of ['Details', 'Personnel', 'Workflow timeline', 'Safety requirements', 'Isolation register', 'Closeout checklist', 'Audit log']) {
      expect(text).toContain(section);
    }
  });

  it('when the permit has isolation points, a closeout and people, then the register, checklist labels and names appear', () => {
    const text = squash(pdfToText(entries.read('PTW_PTW-2025-000001.pdf')));
    expect(text).toContain('Main breaker MCC-3');
    expect(text).toContain('Steam valve V-12');
    expect(text).toContain('L-17, L-18');
    expect(text).toContain('Work area cleaned');
    expect(text).toContain('Tools and materials removed');
    expect(text).toContain('Personal locks removed');
    expect(text).toContain('Waiting for the fire watch to end.');
    expect(text).toContain('Sam Supervisor (u-super)');
    expect(text).toContain('Helmet');
    expect(text).toContain('Fire watch for 30 minutes');
  });

  it('when dates are printed, then they are ISO 8601 in UTC', () => {
    const text = pdfToText(entries.read('PTW_PTW-2025-000001.pdf'));
    expect(text).toMatch(/Planned start\s+2025-03-01T09:00:00Z/);
    expect(text).toMatch(/Planned end\s+2025-03-01T17:00:00Z/);
  });

  it('when the description and the audit log are longer than a page, then they flow onto further pages whole', () => {
    const text = pdfToText(entries.read('PTW_PTW-2025-000001.pdf'));
    expect(text).toContain('PTW-2025-000001 - page 2');
    expect(squash(text)).toContain(LONG_TAIL);
    // The last audit row (k = 59, six minutes apart from 08:00) is on the last page.
    expect(text).toContain('2025-03-01T13:54:00Z');
    expect(text.split('\f').length).toBeGreaterThan(3);
  });

  it('when a permit has no steps, points, closeout or audit, then each section says so', () => {
    const text = pdfToText(entries.read('PTW_PTW-2025-000002.pdf'));
    expect(text).toContain('Scaffold inspection 2');
    expect(text).toContain('No workflow steps');
    expect(text).toContain('No isolation points.');
    expect(text).toContain('No closeout has been started.');
    expect(text).toContain('No audit events.');
    expect(text).not.toContain('Main breaker MCC-3');
  });

  it('when nothing is to be exported, then the result is a valid empty ZIP', async () => {
    const out = new Collect();
    const done = await streamPdfZip(from([]), out);
    expect(done).toEqual({ permitCount: 0, bytes: out.buffer.length });
    expect(out.buffer.subarray(0, 4).readUInt32LE(0)).toBe(0x06054b50); // end-of-central-directory only
  });
});

describe('streamPdfZip flow control', () => {
  it('when the output stops accepting bytes, then only a few permits are pulled from the source, and an abort then ends the run', async () => {
    const source = endlessSamples();
    const ac = new AbortController();
    const out = new Stalled();
    const run = streamPdfZip(source.items, out, { signal: ac.signal });
    run.catch(() => undefined);
    try {
      const stalledAt = await settled(source.pulled);
      // What waits for the reader is bounded by the stream buffers: about 65 small PDFs here.
      expect(stalledAt).toBeGreaterThan(0);
      expect(stalledAt).toBeLessThan(150);
    } finally {
      ac.abort();
    }
    await expect(run).rejects.toMatchObject({ name: 'AbortError' });
    expect(out.destroyed).toBe(true);
  }, 20_000);

  it('when the signal aborts while the source is stuck, then the run rejects at once and the output is destroyed', async () => {
    const ac = new AbortController();
    async function* stuck() {
      yield samplePermit(1);
      yield samplePermit(2);
      ac.abort();
      await new Promise(() => undefined);
    }
    const out = new Collect();
    await expect(streamPdfZip(stuck(), out, { signal: ac.signal })).rejects.toMatchObject({ name: 'AbortError' });
    expect(out.destroyed).toBe(true);
  });

  it('when the signal aborts between permits, then the source is closed and no further permit is read', async () => {
    const ac = new AbortController();
    let pulled = 0;
    let closed = false;
    async function* source() {
      try {
        for (let i = 1; ; i++) {
          pulled += 1;
          if (i === 3) ac.abort();
          yield samplePermit(i);
        }
      } finally {
        closed = true;
      }
    }
    await expect(streamPdfZip(source(), new Collect(), { signal: ac.signal })).rejects.toMatchObject({ name: 'AbortError' });
    await new Promise((r) => setImmediate(r));
    expect(closed).toBe(true);
    expect(pulled).toBe(3);
  });

  it('when the signal is already aborted, then nothing is read and the run rejects', async () => {
    let pulled = 0;
    async function* source() {
      pulled += 1;
      yield samplePermit(1);
    }
    await expect(streamPdfZip(source(), new Collect(), { signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });
    expect(pulled).toBe(0);
  });

  it('when the source fails, then the run rejects with its error and the output is destroyed, not ended', async () => {
    async function* failing() {
      yield samplePermit(1);
      throw new Error('cursor lost');
    }
    const out = new Collect();
    let ended = false;
    out.on('finish', () => (ended = true));
    await expect(streamPdfZip(failing(), out)).rejects.toThrow('cursor lost');
    expect(out.destroyed).toBe(true);
    expect(ended).toBe(false);
  });

  it('when the output fails, then the run rejects with its error', async () => {
    const out = new Writable({ write: (_c, _e, cb) => cb(new Error('client went away')) });
    await expect(streamPdfZip(from([samplePermit(1), samplePermit(2)]), out)).rejects.toThrow('client went away');
  });
});

describe('renderPermitPdf', () => {
  it('when rendered alone, then the stream is a complete PDF', async () => {
    const chunks: Buffer[] = [];
    for await (const c of renderPermitPdf(samplePermit(7))) chunks.push(c as Buffer);
    const pdf = Buffer.concat(chunks);
    expect(pdf.subarray(0, 5).toString()).toBe('%PDF-');
    expect(pdf.subarray(-6).toString()).toContain('%%EOF');
    expect(pdfToText(pdf)).toContain('Pump seal replacement 7');
  });
});

describe('renderPermitPdf with large permits', () => {
  it('when a permit has 300 isolation points, an unbroken 20 000-character text and a huge comment, then every row is printed over many pages', async () => {
    const p = samplePermit(9, { isolationPoints: 300, auditRows: 200 });
    p.description = `${'A'.repeat(20_000)} END-OF-TEXT`;
    p.closeout!.checklist.area_clean.comments = 'word '.repeat(2000);
    const chunks: Buffer[] = [];
    for await (const c of renderPermitPdf(p)) chunks.push(c as Buffer);
    const text = pdfToText(Buffer.concat(chunks));
    const pages = text.split('\f').filter((pg) => pg.trim());
    expect(pages.length).toBeGreaterThan(15);
    // The line may break after a hyphen inside a word.
    expect(text).toMatch(/END-OF-\s*TEXT/);
    for (const k of [0, 150, 299]) expect(text).toContain(`L-9-${k}`);
    expect(text).toContain('Tools and materials removed');
    // The register's column headers are repeated on every page it spans.
    expect(pages.filter((pg) => /Point\s+Energy\s+Req\./.test(pg)).length).toBeGreaterThan(5);
  });
});

describe('pdfText', () => {
  it('when text is Latin-1 or typographic, then it is kept as is', () => {
    expect(pdfText('Café – “ok” … €5')).toBe('Café – “ok” … €5');
  });

  it('when a letter is outside the standard fonts, then its base letter or "?" is printed', () => {
    expect(pdfText('Łódź ćwierć')).toBe('?ódz cwierc');
    expect(pdfText('漢字 ok')).toBe('?? ok');
  });

  it('when text has tabs, CRLF or control characters, then they become spaces, newlines or nothing', () => {
    expect(pdfText('a\tb\r\nc\u0007d')).toBe('a    b\ncd');
  });
});

describe('pdfEntryName', () => {
  it('when the number contains path characters, then the entry name cannot leave the archive root', () => {
    expect(pdfEntryName('PTW-2025-000001')).toBe('PTW_PTW-2025-000001.pdf');
    expect(pdfEntryName('../../etc/passwd')).toBe('PTW_.._.._etc_passwd.pdf');
    expect(pdfEntryName('../../etc/passwd')).not.toContain('/');
  });
});
