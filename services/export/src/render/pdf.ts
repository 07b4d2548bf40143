import PDFDocument from 'pdfkit';
import type { Readable } from 'node:stream';
import { isoDate, personLabel } from './format';
import type { ExportPermit } from './types';

/*
 * One permit → one PDF. Only the PDF standard fonts are used, so no font file ships with the
 * service; they cover the WinAnsi (Latin-1 and a few typographic) characters only, and every other
 * character is printed as its unaccented base letter when there is one, else as '?'.
 */

const REGULAR = 'Helvetica';
const BOLD = 'Helvetica-Bold';
const ITALIC = 'Helvetica-Oblique';
const INK = '#111111';
const MUTED = '#555555';
const ACCENT = '#1f3a5f';
const RULE = '#bbbbbb';
const SHADE = '#e8edf3';

const MARGIN = 50;
const BODY = 9.5;
const SMALL = 7.5;
const CELL_PAD = 3;
/** A table row never grows past this; longer cells end in an ellipsis (full text is in Excel/audit). */
const MAX_ROW_HEIGHT = 160;
const LABEL_WIDTH = 120;
/** Short key/value fields are clipped to a few lines; long free texts get a paragraph instead. */
const MAX_FIELD_HEIGHT = 60;
/** Room a section heading takes, with the space above it. */
const HEADING_HEIGHT = 36;

type Doc = PDFKit.PDFDocument;

const WIN_ANSI_EXTRA = new Set('€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ');

function encodable(ch: string): boolean {
  const c = ch.codePointAt(0)!;
  return ch === '\n' || (c >= 0x20 && c <= 0x7e) || (c >= 0xa0 && c <= 0xff) || WIN_ANSI_EXTRA.has(ch);
}

/** Text the standard fonts can print (see the note at the top). */
export function pdfText(value: string | null | undefined): string {
  if (!value) return '';
  let out = '';
  for (const ch of value.replace(/\r\n?/g, '\n').replace(/\t/g, '    ').normalize('NFC')) {
    if (encodable(ch)) {
      out += ch;
      continue;
    }
    const base = ch.normalize('NFKD').replace(/\p{M}/gu, '');
    out += base && [...base].every(encodable) ? base : /\p{Cc}/u.test(ch) ? '' : '?';
  }
  return out;
}

const yesNo = (b: boolean | undefined) => (b ? 'Yes' : 'No');
const orDash = (s: string) => (s === '' ? '-' : s);
const humanize = (s: string) => s.replace(/_/g, ' ').replace(/^./, (c) => c.toUpperCase());

interface Column {
  header: string;
  /** Share of the content width. */
  width: number;
}

class Layout {
  readonly left: number;
  readonly width: number;
  private heading: string | undefined;

  constructor(readonly doc: Doc) {
    this.left = doc.page.margins.left;
    this.width = doc.page.width - doc.page.margins.left - doc.page.margins.right;
  }

  get bottom(): number {
    return this.doc.page.height - this.doc.page.margins.bottom;
  }

  /** Starts a new page when fewer than `height` points are left on this one. */
  ensure(height: number): void {
    if (this.doc.y + height > this.bottom) this.doc.addPage();
  }

  /** Starts a section; its heading is drawn with what follows it, never alone at a page's foot. */
  section(title: string): void {
    this.heading = title;
  }

  /** Makes room for `height` points of content (and the pending heading), then draws the heading. */
  private begin(height: number): void {
    const { doc } = this;
    if (this.heading === undefined) {
      this.ensure(height);
      return;
    }
    doc.moveDown(0.8);
    this.ensure(HEADING_HEIGHT + height);
    doc.font(BOLD).fontSize(12.5).fillColor(ACCENT).text(pdfText(this.heading), this.left, doc.y, { width: this.width });
    const y = doc.y + 2;
    doc.moveTo(this.left, y).lineTo(this.left + this.width, y).lineWidth(0.8).strokeColor(ACCENT).stroke();
    doc.y = y + 5;
    doc.x = this.left;
    doc.font(REGULAR).fontSize(BODY).fillColor(INK);
    this.heading = undefined;
  }

  /** A label and a short value side by side, clipped to a few lines. */
  field(label: string, value: string): void {
    const { doc } = this;
    const valueWidth = this.width - LABEL_WIDTH;
    const text = orDash(pdfText(value));
    doc.font(REGULAR).fontSize(BODY);
    const height = Math.min(MAX_FIELD_HEIGHT, Math.max(doc.heightOfString(text, { width: valueWidth }), doc.currentLineHeight(true)));
    this.begin(height + 2);
    const y = doc.y;
    doc.font(BOLD).fillColor(MUTED).text(pdfText(label), this.left, y, { width: LABEL_WIDTH - 6, height, ellipsis: true });
    doc.font(REGULAR).fillColor(INK).text(text, this.left + LABEL_WIDTH, y, { width: valueWidth, height, ellipsis: true });
    doc.y = y + height + 2;
    doc.x = this.left;
  }

  /** A label over a free text of any length; the text flows over as many pages as it needs. */
  paragraph(label: string, value: string): void {
    const { doc } = this;
    this.begin(30);
    doc.font(BOLD).fontSize(BODY).fillColor(MUTED).text(pdfText(label), this.left, doc.y, { width: this.width });
    doc.font(REGULAR).fillColor(INK).text(orDash(pdfText(value)), this.left, doc.y, { width: this.width });
    doc.moveDown(0.4);
  }

  note(text: string): void {
    this.begin(16);
    this.doc.font(ITALIC).fontSize(BODY).fillColor(MUTED).text(pdfText(text), this.left, this.doc.y, { width: this.width });
    this.doc.font(REGULAR).fillColor(INK);
  }

  /** Rows of cells under a header that is repeated on every page the table spans. */
  table(columns: readonly Column[], rows: readonly string[][], empty: string): void {
    const { doc } = this;
    if (rows.length === 0) {
      this.note(empty);
      return;
    }
    const widths = columns.map((c) => c.width * this.width);
    const cellHeight = (cells: readonly string[], font: string) => {
      doc.font(font).fontSize(SMALL);
      const h = Math.max(...cells.map((t, i) => doc.heightOfString(t || ' ', { width: widths[i] - 2 * CELL_PAD })));
      return Math.min(MAX_ROW_HEIGHT, h) + 2 * CELL_PAD;
    };
    const drawRow = (cells: readonly string[], font: string, height: number, shade: boolean) => {
      const y = doc.y;
      if (shade) doc.rect(this.left, y, this.width, height).fill(SHADE);
      doc.font(font).fontSize(SMALL).fillColor(INK);
      let x = this.left;
      cells.forEach((t, i) => {
        doc.text(t, x + CELL_PAD, y + CELL_PAD, { width: widths[i] - 2 * CELL_PAD, height: height - 2 * CELL_PAD, ellipsis: true });
        x += widths[i];
      });
      doc.moveTo(this.left, y + height).lineTo(this.left + this.width, y + height).lineWidth(0.4).strokeColor(RULE).stroke();
      doc.y = y + height;
      doc.x = this.left;
    };
    const headers = columns.map((c) => pdfText(c.header));
    const headerHeight = cellHeight(headers, BOLD);
    const drawHeader = () => drawRow(headers, BOLD, headerHeight, true);

    rows.forEach((raw, i) => {
      const cells = raw.map(pdfText);
      const height = cellHeight(cells, REGULAR);
      if (i === 0) {
        // Never a header alone at the foot of a page.
        this.begin(headerHeight + height);
        drawHeader();
      } else if (doc.y + height > this.bottom) {
        doc.addPage();
        drawHeader();
      }
      drawRow(cells, REGULAR, height, false);
    });
    doc.font(REGULAR).fontSize(BODY).fillColor(INK);
    doc.moveDown(0.4);
  }
}

/** `at` and `by` of one action, on two lines. */
function stamp(p: ExportPermit, by: string | null | undefined, at: Date | null | undefined): string {
  return [isoDate(at), personLabel(p, by)].filter(Boolean).join('\n');
}

function header(l: Layout, p: ExportPermit): void {
  const { doc } = l;
  doc.font(REGULAR).fontSize(SMALL).fillColor(MUTED).text('PERMIT TO WORK', l.left, doc.y, { width: l.width });
  doc.font(BOLD).fontSize(20).fillColor(ACCENT).text(pdfText(p.permit_number), l.left, doc.y, { width: l.width });
  doc.font(BOLD).fontSize(14).fillColor(INK).text(pdfText(p.title), l.left, doc.y, { width: l.width });
  doc.moveDown(0.3);
  doc.font(REGULAR).fontSize(BODY).fillColor(INK).text(
    pdfText(`Status: ${p.status.toUpperCase()}    Priority: ${p.priority}    Risk: ${p.risk_level} (${p.risk_score})`),
    l.left,
    doc.y,
    { width: l.width },
  );
}

function details(l: Layout, p: ExportPermit): void {
  l.section('Details');
  l.field('Permit type', p.permit_type_name ?? p.permit_type_id ?? '');
  l.field('Project', p.project_name ? `${p.project_name} (${p.project_id})` : p.project_id);
  l.field('Location', p.location);
  l.field('Priority', p.priority);
  l.field('Risk', `probability ${p.probability} x severity ${p.severity} = ${p.risk_score} (${p.risk_level})`);
  l.field('Planned start', isoDate(p.planned_start_time));
  l.field('Planned end', isoDate(p.planned_end_time));
  l.field('Actual start', isoDate(p.actual_start_time));
  l.field('Actual end', isoDate(p.actual_end_time));
  l.paragraph('Description', p.description);
}

function personnel(l: Layout, p: ExportPermit): void {
  l.section('Personnel');
  l.field('Created by', personLabel(p, p.created_by));
  l.field('Verifier', personLabel(p, p.verifier_id));
  l.field('Approver', personLabel(p, p.approver_id));
}

function timeline(l: Layout, p: ExportPermit): void {
  l.section('Workflow timeline');
  const milestones: [string, Date | null | undefined][] = [
    ['Created', p.created_at],
    ['Submitted', p.submitted_at],
    ['Verified', p.verified_at],
    ['Approved', p.approved_at],
    ['Work started', p.actual_start_time],
    ['Work ended', p.actual_end_time],
    ['Last updated', p.updated_at],
  ];
  for (const [label, at] of milestones) l.field(label, isoDate(at));
  l.doc.moveDown(0.4);
  l.table(
    [
      { header: 'Step', width: 0.16 },
      { header: 'Assignee', width: 0.3 },
      { header: 'Status', width: 0.14 },
      { header: 'Started', width: 0.2 },
      { header: 'Completed', width: 0.2 },
    ],
    p.workflow_steps.map((s) => [humanize(s.step), personLabel(p, s.assignee_id), s.status, isoDate(s.started_at), isoDate(s.completed_at)]),
    'No workflow steps (the permit has not been submitted).',
  );
}

function safety(l: Layout, p: ExportPermit): void {
  l.section('Safety requirements');
  l.paragraph('PPE requirements', p.ppe_requirements.map((x) => `- ${x}`).join('\n'));
  l.paragraph('Control measures', p.control_measures);
  l.table(
    [
      { header: 'Safety checklist item', width: 0.8 },
      { header: 'Checked', width: 0.2 },
    ],
    Object.entries(p.safety_checklist).map(([key, done]) => [humanize(key), yesNo(done)]),
    'No safety checklist items.',
  );
}

function isolation(l: Layout, p: ExportPermit): void {
  l.section('Isolation register');
  l.table(
    [
      { header: 'Point', width: 0.16 },
      { header: 'Energy', width: 0.1 },
      { header: 'Req.', width: 0.05 },
      { header: 'Status', width: 0.09 },
      { header: 'Locks', width: 0.09 },
      { header: 'Isolated', width: 0.17 },
      { header: 'Verified', width: 0.17 },
      { header: 'De-isolated', width: 0.17 },
    ],
    p.isolation_points.map((ip) => [
      ip.name,
      ip.energy_type,
      yesNo(ip.required),
      ip.status,
      ip.lock_ids.join(', '),
      stamp(p, ip.isolated_by, ip.isolated_at),
      stamp(p, ip.verified_by, ip.verified_at),
      stamp(p, ip.deisolated_by, ip.deisolated_at),
    ]),
    'No isolation points.',
  );
}

function closeout(l: Layout, p: ExportPermit): void {
  l.section('Closeout checklist');
  const c = p.closeout;
  if (!c) {
    l.note('No closeout has been started.');
    return;
  }
  l.table(
    [
      { header: 'Item', width: 0.3 },
      { header: 'Required', width: 0.1 },
      { header: 'Done', width: 0.08 },
      { header: 'Comments', width: 0.3 },
      { header: 'Done at / by', width: 0.22 },
    ],
    Object.values(c.checklist).map((it) => [it.label, yesNo(it.required), yesNo(it.done), it.comments ?? '', stamp(p, it.by, it.at)]),
    'The permit type defines no closeout items.',
  );
  l.field('Completed', c.completed ? `Yes, ${stamp(p, c.completed_by, c.completed_at).replace('\n', ' by ')}` : 'No');
  l.paragraph('Remarks', c.remarks ?? '');
}

function auditLog(l: Layout, p: ExportPermit): void {
  l.section('Audit log');
  l.table(
    [
      { header: 'At', width: 0.2 },
      { header: 'Action', width: 0.14 },
      { header: 'From -> To', width: 0.2 },
      { header: 'User', width: 0.2 },
      { header: 'Comments', width: 0.26 },
    ],
    p.audit.map((a) => [isoDate(a.at), a.action, a.from || a.to ? `${a.from ?? ''} -> ${a.to ?? ''}` : '', personLabel(p, a.user_id), a.comments ?? '']),
    'No audit events.',
  );
}

/**
 * Renders one permit as a PDF. The document is laid out synchronously and its bytes are buffered by
 * the returned stream until read, so the memory held is one permit's PDF.
 */
export function renderPermitPdf(p: ExportPermit): Readable {
  const doc = new PDFDocument({
    size: 'A4',
    margins: { top: MARGIN + 10, bottom: MARGIN, left: MARGIN, right: MARGIN },
    info: { Title: pdfText(`${p.permit_number} - ${p.title}`), Subject: 'Permit To Work', Creator: 'PTW platform' },
  });
  const l = new Layout(doc);
  let page = 1;
  doc.on('pageAdded', () => {
    page += 1;
    const { x, y } = doc;
    doc.font(REGULAR).fontSize(SMALL).fillColor(MUTED).text(pdfText(`${p.permit_number} - page ${page}`), l.left, MARGIN / 2, {
      width: l.width,
      align: 'right',
      lineBreak: false,
    });
    doc.x = x;
    doc.y = y;
    doc.font(REGULAR).fontSize(BODY).fillColor(INK);
  });

  header(l, p);
  details(l, p);
  personnel(l, p);
  timeline(l, p);
  safety(l, p);
  isolation(l, p);
  closeout(l, p);
  auditLog(l, p);
  doc.end();
  return doc;
}
