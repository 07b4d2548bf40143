import ExcelJS from 'exceljs';
import { once } from 'node:events';
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ByteCounter, RunGuard, toError, ZIP_BUFFER_BYTES } from './flow';
import { isoDate, personLabel } from './format';
import type { ExportPermit, ExportResult } from './types';

/*
 * Why detail rows go through temporary files: ExcelJS's streaming writer zips the worksheets one
 * after the other (one archiver, one entry at a time), so rows written to a second open worksheet
 * are held in memory until every earlier worksheet is committed. Writing the Permits rows and the
 * detail rows of each permit as it arrives would therefore keep all detail rows of the export in
 * memory (measured: about 5 KB per permit of 11 detail rows, 38 MB for 5000 permits). Instead the detail rows are spooled to NDJSON files in a private temporary directory
 * while the Permits sheet streams, and each detail sheet is streamed from its file after the
 * previous sheet is committed: memory stays flat, disk use is the size of the detail rows.
 */

type Cell = string | number | boolean | null;
type Row = Cell[];

export const PERMIT_HEADERS = [
  'Permit Number',
  'Title',
  'Type',
  'Status',
  'Priority',
  'Risk Level',
  'Risk Score',
  'Location',
  'Project',
  'Planned Start',
  'Planned End',
  'Actual Start',
  'Actual End',
  'Created By',
  'Verifier',
  'Approver',
  'Submitted At',
  'Verified At',
  'Approved At',
  'Created At',
  'Updated At',
] as const;

export const ISOLATION_HEADERS = [
  'Permit Number',
  'Point',
  'Energy Type',
  'Required',
  'Status',
  'Lock IDs',
  'Isolated By',
  'Isolated At',
  'Verified By',
  'Verified At',
  'De-isolated By',
  'De-isolated At',
] as const;

export const CLOSEOUT_HEADERS = [
  'Permit Number',
  'Item Key',
  'Item',
  'Required',
  'Done',
  'Comments',
  'Done By',
  'Done At',
  'Closeout Completed',
  'Completed By',
  'Completed At',
  'Remarks',
] as const;

export const AUDIT_HEADERS = ['Permit Number', 'Action', 'From', 'To', 'User', 'At', 'Comments'] as const;

/** Excel refuses cells longer than this. */
const MAX_CELL = 32767;
/**
 * Detail rows written between two yields to the event loop. The streaming writer does not pass its
 * compressor's backpressure back to committed rows, so the producer must leave the compressor
 * (zlib on the thread pool) turns to keep up: every 200 rows let 8 MB of XML pile up in a 5000-
 * permit export, every 50 rows keeps it under 1 MB.
 */
const ROWS_PER_YIELD = 50;

/** Text a worksheet can hold: no XML-illegal control characters, no more than Excel's cell limit. */
function text(value: string | null | undefined): string {
  if (!value) return '';
  // eslint-disable-next-line no-control-regex -- removing control characters is the point
  const clean = value.replace(/[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/g, '');
  return clean.length > MAX_CELL ? `${clean.slice(0, MAX_CELL - 1)}…` : clean;
}

/** An empty text is written as no cell at all. */
const blanksToNull = (row: Row): Row => row.map((v) => (v === '' ? null : v));

function permitRow(p: ExportPermit): Row {
  return [
    text(p.permit_number),
    text(p.title),
    text(p.permit_type_name ?? p.permit_type_id),
    p.status,
    p.priority,
    p.risk_level,
    p.risk_score,
    text(p.location),
    text(p.project_name ?? p.project_id),
    isoDate(p.planned_start_time),
    isoDate(p.planned_end_time),
    isoDate(p.actual_start_time),
    isoDate(p.actual_end_time),
    text(personLabel(p, p.created_by)),
    text(personLabel(p, p.verifier_id)),
    text(personLabel(p, p.approver_id)),
    isoDate(p.submitted_at),
    isoDate(p.verified_at),
    isoDate(p.approved_at),
    isoDate(p.created_at),
    isoDate(p.updated_at),
  ];
}

function isolationRows(p: ExportPermit): Row[] {
  return p.isolation_points.map((ip) => [
    text(p.permit_number),
    text(ip.name),
    text(ip.energy_type),
    ip.required,
    ip.status,
    text(ip.lock_ids.join(', ')),
    text(personLabel(p, ip.isolated_by)),
    isoDate(ip.isolated_at),
    text(personLabel(p, ip.verified_by)),
    isoDate(ip.verified_at),
    text(personLabel(p, ip.deisolated_by)),
    isoDate(ip.deisolated_at),
  ]);
}

/** One row per checklist item, each repeating the closeout's own fields; one row when it has none. */
function closeoutRows(p: ExportPermit): Row[] {
  const c = p.closeout;
  if (!c) return [];
  const tail: Row = [c.completed, text(personLabel(p, c.completed_by)), isoDate(c.completed_at), text(c.remarks)];
  const items = Object.entries(c.checklist);
  if (items.length === 0) return [[text(p.permit_number), '', '', null, null, '', '', '', ...tail]];
  return items.map(([key, it]) => [text(p.permit_number), text(key), text(it.label), it.required, it.done, text(it.comments), text(personLabel(p, it.by)), isoDate(it.at), ...tail]);
}

function auditRows(p: ExportPermit): Row[] {
  return p.audit.map((a) => [text(p.permit_number), text(a.action), text(a.from), text(a.to), text(personLabel(p, a.user_id)), isoDate(a.at), text(a.comments)]);
}

const DETAILS = [
  { sheet: 'Isolation Points', headers: ISOLATION_HEADERS, rows: isolationRows },
  { sheet: 'Closeout', headers: CLOSEOUT_HEADERS, rows: closeoutRows },
  { sheet: 'Audit', headers: AUDIT_HEADERS, rows: auditRows },
] as const;

/** NDJSON spool files of the detail sheets, one per sheet, in a private temporary directory. */
class Spool {
  private readonly files: { path: string; stream: WriteStream }[];

  private constructor(
    readonly dir: string,
    private readonly guard: RunGuard,
  ) {
    this.files = DETAILS.map((_, i) => {
      const path = join(dir, `sheet${i}.ndjson`);
      return { path, stream: createWriteStream(path) };
    });
    for (const f of this.files) f.stream.on('error', (err) => guard.fail(err));
  }

  static async open(guard: RunGuard): Promise<Spool> {
    return new Spool(await mkdtemp(join(tmpdir(), 'ptw-export-')), guard);
  }

  async write(index: number, rows: readonly Row[]): Promise<void> {
    if (rows.length === 0) return;
    const { stream } = this.files[index];
    const ok = stream.write(rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
    if (!ok) await this.guard.race(once(stream, 'drain').then(() => undefined));
  }

  async *read(index: number): AsyncGenerator<Row> {
    const { path, stream } = this.files[index];
    if (!stream.writableFinished) {
      const finished = once(stream, 'finish');
      stream.end();
      await this.guard.race(finished);
    }
    const lines = createInterface({ input: createReadStream(path), crlfDelay: Infinity });
    try {
      for await (const line of lines) if (line) yield JSON.parse(line) as Row;
    } finally {
      lines.close();
    }
  }

  async remove(): Promise<void> {
    for (const f of this.files) f.stream.destroy();
    await rm(this.dir, { recursive: true, force: true });
  }
}

function addSheet(wb: ExcelJS.stream.xlsx.WorkbookWriter, name: string, headers: readonly string[]): ExcelJS.Worksheet {
  const ws = wb.addWorksheet(name);
  ws.columns = headers.map((h) => ({ key: h, width: Math.max(12, h.length + 2) }));
  ws.addRow([...headers]).commit();
  return ws;
}

/**
 * Streams an XLSX into `out` and ends it: sheet `Permits` (one row per permit, headers
 * {@link PERMIT_HEADERS}) and, when `detailed`, sheets `Isolation Points`, `Closeout` and `Audit`.
 * Dates are ISO 8601 UTC text. Rows are committed as they are produced and the producer waits
 * while `out` is saturated, so memory stays flat in the number of permits (detail rows: see the
 * note at the top of this file).
 *
 * On abort (`signal`), on an error of `out` or of the workbook, the promise rejects, `permits` is
 * closed, `out` is destroyed rather than ended, and the temporary files are removed.
 */
export async function streamExcel(permits: AsyncIterable<ExportPermit>, out: Writable, opts: { detailed: boolean; signal?: AbortSignal }): Promise<ExportResult> {
  const guard = new RunGuard(opts.signal);
  const counter = new ByteCounter();
  const piped = pipeline(counter, out);
  piped.catch((err: unknown) => guard.fail(err));

  let spool: Spool | undefined;
  try {
    // `zip` goes to ExcelJS's own archiver, whose options type omits the stream's buffer size.
    const zip = { highWaterMark: ZIP_BUFFER_BYTES } as Partial<ExcelJS.stream.xlsx.WorkbookStreamWriterOptions['zip']>;
    const wb = new ExcelJS.stream.xlsx.WorkbookWriter({ stream: counter, useStyles: false, useSharedStrings: false, zip });
    const main = addSheet(wb, 'Permits', PERMIT_HEADERS);
    const details = opts.detailed ? DETAILS.map((d) => ({ ...d, ws: addSheet(wb, d.sheet, d.headers) })) : [];
    if (opts.detailed) spool = await Spool.open(guard);

    let permitCount = 0;
    for await (const p of guard.iterate(permits)) {
      main.addRow(blanksToNull(permitRow(p))).commit();
      for (const [i, d] of details.entries()) await spool!.write(i, d.rows(p).map(blanksToNull));
      permitCount += 1;
      await guard.yieldTo(counter);
    }
    main.commit();

    for (const [i, d] of details.entries()) {
      let n = 0;
      for await (const row of spool!.read(i)) {
        d.ws.addRow(row).commit();
        if (++n % ROWS_PER_YIELD === 0) await guard.yieldTo(counter);
      }
      d.ws.commit();
    }
    await guard.race(wb.commit());
    await guard.race(piped);
    return { permitCount, bytes: counter.bytes };
  } catch (err) {
    guard.fail(err);
    counter.destroy(toError(err));
    // The pipeline destroys `out` in turn; reject only once it has.
    await piped.catch(() => undefined);
    throw err;
  } finally {
    await spool?.remove();
  }
}
