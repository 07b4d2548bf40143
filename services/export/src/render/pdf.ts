import PDFDocument from 'pdfkit';
import type { Readable } from 'node:stream';
import { notoFonts, type FontBook } from './fonts';
import { isoDate, personLabel } from './format';
import { cleanText, TextSetter, type Line, type TextStyle } from './text';
import type { ExportPermit } from './types';

/*
 * One permit → one PDF, in the Noto faces of its scripts (fonts.ts, text.ts), each embedded as a
 * subset of the glyphs used. Latin-only permits embed Noto Sans regular and bold.
 */

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

const text = (size: number, color = INK): TextStyle => ({ size, weight: 'regular', color });
const bold = (size: number, color = INK): TextStyle => ({ size, weight: 'bold', color });
const STYLE = {
  body: text(BODY),
  label: bold(BODY, MUTED),
  note: { ...text(BODY, MUTED), oblique: true },
  heading: bold(12.5, ACCENT),
  cell: text(SMALL),
  headerCell: bold(SMALL),
  small: text(SMALL, MUTED),
};

type Doc = PDFKit.PDFDocument;

const yesNo = (b: boolean | undefined) => (b ? 'Yes' : 'No');
const orDash = (s: string) => (cleanText(s) === '' ? '-' : s);
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

  constructor(
    readonly doc: Doc,
    readonly t: TextSetter,
  ) {
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

  /** Moves down by `lines` body lines. */
  gap(lines: number): void {
    this.doc.y += lines * this.t.lineHeight(BODY);
  }

  /** Text of any length over the full width, continued on further pages as needed. */
  flow(value: string, style: TextStyle): void {
    this.t.flow(this.t.lines(value, style, this.width), this.left, this.width, style, () => this.bottom);
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
    this.gap(0.8);
    this.ensure(HEADING_HEIGHT + height);
    this.flow(this.heading, STYLE.heading);
    const y = doc.y + 2;
    doc
      .moveTo(this.left, y)
      .lineTo(this.left + this.width, y)
      .lineWidth(0.8)
      .strokeColor(ACCENT)
      .stroke();
    doc.y = y + 5;
    doc.x = this.left;
    this.heading = undefined;
  }

  /** Lines of `value` cut to `maxHeight` (at least one line), ending in "…" when cut. */
  private clipped(value: string, style: TextStyle, width: number, maxHeight: number): Line[] {
    const max = Math.max(1, Math.floor(maxHeight / this.t.lineHeight(style.size)));
    return this.t.clip(this.t.lines(value, style, width), max, style, width);
  }

  /** A label and a short value side by side, clipped to a few lines. */
  field(label: string, value: string): void {
    const { doc, t } = this;
    const valueWidth = this.width - LABEL_WIDTH;
    const values = this.clipped(orDash(value), STYLE.body, valueWidth, MAX_FIELD_HEIGHT);
    const height = values.length * t.lineHeight(BODY);
    const labels = this.clipped(label, STYLE.label, LABEL_WIDTH - 6, height);
    this.begin(height + 2);
    const y = doc.y;
    t.draw(labels, this.left, y, LABEL_WIDTH - 6, STYLE.label);
    t.draw(values, this.left + LABEL_WIDTH, y, valueWidth, STYLE.body);
    doc.y = y + height + 2;
    doc.x = this.left;
  }

  /** A label over a free text of any length; the text flows over as many pages as it needs. */
  paragraph(label: string, value: string): void {
    this.begin(30);
    this.flow(label, STYLE.label);
    this.flow(orDash(value), STYLE.body);
    this.gap(0.4);
  }

  note(value: string): void {
    this.begin(16);
    this.flow(value, STYLE.note);
  }

  /** Rows of cells under a header that is repeated on every page the table spans. */
  table(columns: readonly Column[], rows: readonly string[][], empty: string): void {
    const { doc, t } = this;
    if (rows.length === 0) {
      this.note(empty);
      return;
    }
    const widths = columns.map((c) => c.width * this.width - 2 * CELL_PAD);
    const lineHeight = t.lineHeight(SMALL);
    const compose = (cells: readonly string[], style: TextStyle) => {
      const lines = cells.map((c, i) => this.clipped(c, style, widths[i], MAX_ROW_HEIGHT));
      return { lines, style, height: Math.max(...lines.map((l) => l.length)) * lineHeight + 2 * CELL_PAD };
    };
    const drawRow = (row: ReturnType<typeof compose>, shade: boolean) => {
      const y = doc.y;
      if (shade) doc.rect(this.left, y, this.width, row.height).fill(SHADE);
      let x = this.left;
      row.lines.forEach((lines, i) => {
        t.draw(lines, x + CELL_PAD, y + CELL_PAD, widths[i], row.style);
        x += widths[i] + 2 * CELL_PAD;
      });
      doc
        .moveTo(this.left, y + row.height)
        .lineTo(this.left + this.width, y + row.height)
        .lineWidth(0.4)
        .strokeColor(RULE)
        .stroke();
      doc.y = y + row.height;
      doc.x = this.left;
    };
    const header = compose(
      columns.map((c) => c.header),
      STYLE.headerCell,
    );

    rows.forEach((cells, i) => {
      const row = compose(cells, STYLE.cell);
      if (i === 0) {
        // Never a header alone at the foot of a page.
        this.begin(header.height + row.height);
        drawRow(header, true);
      } else if (doc.y + row.height > this.bottom) {
        doc.addPage();
        drawRow(header, true);
      }
      drawRow(row, false);
    });
    this.gap(0.4);
  }
}

/** `at` and `by` of one action, on two lines. */
function stamp(p: ExportPermit, by: string | null | undefined, at: Date | null | undefined): string {
  return [isoDate(at), personLabel(p, by)].filter(Boolean).join('\n');
}

function header(l: Layout, p: ExportPermit): void {
  l.flow('PERMIT TO WORK', STYLE.small);
  l.flow(p.permit_number, bold(20, ACCENT));
  l.flow(p.title, bold(14));
  l.gap(0.3);
  l.flow(`Status: ${p.status.toUpperCase()}    Priority: ${p.priority}    Risk: ${p.risk_level} (${p.risk_score})`, STYLE.body);
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
  l.gap(0.4);
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
 * Renders one permit as a PDF with the faces of `fonts` (loaded once per process). The document is
 * laid out synchronously and its bytes are buffered by the returned stream until read, so the
 * memory held is one permit's PDF.
 */
export function renderPermitPdf(p: ExportPermit, fonts: FontBook = notoFonts()): Readable {
  const doc = new PDFDocument({
    size: 'A4',
    margins: { top: MARGIN + 10, bottom: MARGIN, left: MARGIN, right: MARGIN },
    info: { Title: cleanText(`${p.permit_number} - ${p.title}`), Subject: 'Permit To Work', Creator: 'PTW platform' },
  });
  const t = new TextSetter(doc, fonts);
  const l = new Layout(doc, t);
  let page = 1;
  doc.on('pageAdded', () => {
    page += 1;
    t.draw(t.lines(`${p.permit_number} - page ${page}`, STYLE.small, l.width), l.left, MARGIN / 2, l.width, STYLE.small, 'right');
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
