import bidiFactory from 'bidi-js';
import { blockScript, type Face, type FontBook, type Script, type Weight } from './fonts';

/*
 * Text setting for the PDF export, for text in any mix of scripts. pdfkit sets one font per call
 * and lays out right-to-left words in left-to-right order, so lines are composed here:
 *
 * 1. Each character gets a face by its script (spaces, digits and punctuation take their
 *    neighbour's), and a bidi embedding level (bidi-js, UAX #9).
 * 2. Characters become atoms: runs of one face and level, cut where a line may break (after
 *    spaces, after a hyphen inside a word unless a digit follows, around CJK characters). Atoms
 *    are measured with their shaped width (fontkit shapes Arabic and Indic text inside pdfkit).
 * 3. Lines are filled greedily; a word wider than the line is cut between graphemes.
 * 4. Each line is reordered for display (UAX #9 rule L2 over its runs, L4 mirroring) and drawn
 *    run by run on a common baseline. Right-to-left runs are drawn word by word from the right
 *    (fontkit reverses the glyphs of each right-to-left word), so that readers such as pdftotext
 *    find the words in order. Devanagari and Tamil glyphs are not in character order: their runs
 *    carry the characters as ActualText.
 *
 * Text without a usable face is set in Helvetica, reduced to what it can encode (`pdfText`).
 */

const bidi = bidiFactory();
const graphemes = new Intl.Segmenter('und', { granularity: 'grapheme' });

export interface TextStyle {
  size: number;
  weight: Weight;
  color: string;
  /** Slanted (the notes; no italic face is embedded for them). */
  oblique?: boolean;
}

interface Atom {
  text: string;
  /** null: a standard font; the text is then WinAnsi already. */
  face: Face | null;
  level: number;
  width: number;
  space: boolean;
  /** No line break is allowed before it (a word continuing in another face or direction). */
  glued: boolean;
}

/** A composed line: its atoms in logical order, and whether its paragraph runs right to left. */
export interface Line {
  atoms: Atom[];
  width: number;
  rtl: boolean;
}

/** Characters in an atom that no line of a page can hold, at any size and with the narrowest glyphs. */
const NEVER_FITS = 500;

const STANDARD: Record<Weight, string> = { regular: 'Helvetica', bold: 'Helvetica-Bold' };
/** Helvetica's ascent and line height (with gap) per point of size, as pdfkit computes them from its AFM. */
const HELVETICA_METRICS = { ascent: 0.718, height: 1.156 };

const WIN_ANSI_EXTRA = new Set('€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ');

function encodable(ch: string): boolean {
  const c = ch.codePointAt(0)!;
  return ch === '\n' || (c >= 0x20 && c <= 0x7e) || (c >= 0xa0 && c <= 0xff) || WIN_ANSI_EXTRA.has(ch);
}

function winAnsi(ch: string): string {
  if (encodable(ch)) return ch;
  const base = ch.normalize('NFKD').replace(/\p{M}/gu, '');
  return base && [...base].every(encodable) ? base : '?';
}

/**
 * Text as printed: tabs become spaces, line ends `\n`, control characters go, a lone surrogate
 * becomes U+FFFD (pdfkit cannot hash or encode it), composed (NFC).
 */
export function cleanText(value: string | null | undefined): string {
  if (!value) return '';
  return value
    .replace(/\p{Cs}/gu, '\ufffd')
    .replace(/\r\n?/g, '\n')
    .replace(/\t/g, '    ')
    .normalize('NFC')
    .replace(/(?!\n)\p{Cc}/gu, '');
}

/** What the standard fonts can print: WinAnsi characters, else the unaccented base letter, else `?`. */
export function pdfText(value: string | null | undefined): string {
  return [...cleanText(value)].map(winAnsi).join('');
}

type Kind = Script | 'common' | 'other';

const COMMON = /[\p{Script=Common}\p{Script=Inherited}]/u;
const LATIN_LIKE = /[\p{Script=Latin}\p{Script=Greek}\p{Script=Cyrillic}]/u;

function kindOf(cp: number, ch: string): Kind {
  if (cp < 0x80) return (cp >= 0x41 && cp <= 0x5a) || (cp >= 0x61 && cp <= 0x7a) ? 'latin' : 'common';
  const block = blockScript(cp);
  if (block) return COMMON.test(ch) ? 'common' : block;
  if (
    (cp >= 0x1100 && cp <= 0x11ff) ||
    (cp >= 0x2e80 && cp <= 0x2fdf) ||
    (cp >= 0x3040 && cp <= 0x9fff) ||
    (cp >= 0xa960 && cp <= 0xa97f) ||
    (cp >= 0xac00 && cp <= 0xd7ff) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0xff00 && cp <= 0xffef && !COMMON.test(ch)) ||
    (cp >= 0x20000 && cp <= 0x3ffff)
  ) {
    return 'cjk';
  }
  if (COMMON.test(ch)) return 'common';
  return LATIN_LIKE.test(ch) ? 'latin' : 'other';
}

/** Breaks are allowed around these (CJK is written without spaces), except before closing marks. */
const isCjk = (cp: number) => (cp >= 0x2e80 && cp <= 0x9fff) || (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0xff00 && cp <= 0xff60) || (cp >= 0x20000 && cp <= 0x3ffff);
const NO_BREAK_BEFORE = new Set('、。，．・：；？！）］｝」』】〕〉》ー々ぁぃぅぇぉっゃゅょァィゥェォッャュョ,.;:!?)]}');
const NO_BREAK_AFTER = new Set('（［｛「『【〔〈《([{');
/** Characters of right-to-left scripts; paragraphs without any skip the bidi algorithm. */
const RTL = /[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc]|[\u{10800}-\u{10fff}\u{1e800}-\u{1efff}]/u;

interface Unit {
  ch: string;
  cp: number;
  kind: Kind;
  face: Face | null;
  level: number;
  space: boolean;
}

/** Composes and draws text on one pdfkit document with the faces of a FontBook. */
export class TextSetter {
  private readonly metrics: { ascent: number; height: number };

  constructor(
    readonly doc: PDFKit.PDFDocument,
    private readonly fonts: FontBook,
  ) {
    const latin = fonts.face('latin', 'regular');
    this.metrics = latin ? lineMetrics(latin) : HELVETICA_METRICS;
  }

  /** Height of one line at `size`: the same for every script, so tables keep their layout. */
  lineHeight(size: number): number {
    return this.metrics.height * size;
  }

  /** `value` broken into lines no wider than `width`. */
  lines(value: string, style: TextStyle, width: number): Line[] {
    const out: Line[] = [];
    for (const paragraph of cleanText(value).split('\n')) this.fill(paragraph, style, width, out);
    return out;
  }

  /**
   * The first `max` lines; when text is cut, the last one ends in "…" (its words shortened to make
   * room), as pdfkit's `ellipsis` did.
   */
  clip(lines: Line[], max: number, style: TextStyle, width: number): Line[] {
    if (lines.length <= max) return lines;
    const kept = lines.slice(0, Math.max(1, max));
    const last = kept[kept.length - 1];
    const atoms = [...last.atoms];
    const ellipsisFace = this.fonts.face('latin', style.weight);
    const ellipsis: Atom = { text: '…', face: ellipsisFace, level: last.rtl ? 1 : 0, width: this.measure(ellipsisFace, style, '…'), space: false, glued: true };
    let used = atoms.reduce((w, a) => w + a.width, 0);
    while (atoms.length && (used + ellipsis.width > width || atoms[atoms.length - 1].space)) {
      const tail = atoms.pop()!;
      used -= tail.width;
      const parts = [...graphemes.segment(tail.text)].map((s) => s.segment);
      if (tail.space || parts.length < 2) continue;
      const text = parts.slice(0, -1).join('');
      const shorter = { ...tail, text, width: this.measure(tail.face, style, text) };
      atoms.push(shorter);
      used += shorter.width;
    }
    atoms.push(ellipsis);
    kept[kept.length - 1] = { atoms, width: used + ellipsis.width, rtl: last.rtl };
    return kept;
  }

  /** Draws `lines` from `top` down; right-to-left paragraphs are aligned right, unless `align` says. */
  draw(lines: readonly Line[], x: number, top: number, width: number, style: TextStyle, align?: 'left' | 'right'): void {
    const { doc } = this;
    const { x: keepX, y: keepY } = doc;
    lines.forEach((line, i) => this.drawLine(line, x, top + i * this.lineHeight(style.size), width, style, align));
    doc.x = keepX;
    doc.y = keepY;
  }

  /**
   * Draws `lines` at the current position, continuing on a new page whenever the next line would
   * pass `bottom`, and leaves the position under the last line.
   */
  flow(lines: readonly Line[], x: number, width: number, style: TextStyle, bottom: () => number): void {
    const { doc } = this;
    const height = this.lineHeight(style.size);
    for (const line of lines) {
      if (doc.y + height > bottom()) doc.addPage();
      const y = doc.y;
      this.drawLine(line, x, y, width, style);
      doc.y = y + height;
    }
    doc.x = x;
  }

  private fill(paragraph: string, style: TextStyle, width: number, out: Line[]): void {
    const { atoms, rtl } = this.atoms(paragraph, style);
    let line: Atom[] = [];
    let lineWidth = 0;
    let spaces: Atom[] = [];
    const finish = () => {
      out.push({ atoms: line, width: lineWidth, rtl });
      line = [];
      lineWidth = 0;
    };
    for (const word of words(atoms)) {
      if (word.space) {
        if (line.length) spaces.push(...word.atoms);
        continue;
      }
      const gap = spaces.reduce((w, a) => w + a.width, 0);
      if (line.length && lineWidth + gap + word.width > width) finish();
      if (line.length) {
        line.push(...spaces);
        lineWidth += gap;
      }
      spaces = [];
      if (word.width <= width - lineWidth) {
        line.push(...word.atoms);
        lineWidth += word.width;
        continue;
      }
      // Wider than a line: cut between graphemes.
      for (const atom of word.atoms) {
        let piece = '';
        let pieceWidth = 0;
        const known = new Map<string, number>();
        this.select(atom.face, style);
        for (const { segment } of graphemes.segment(atom.text)) {
          let w = known.get(segment);
          if (w === undefined) {
            w = this.doc.widthOfString(segment);
            known.set(segment, w);
          }
          if (lineWidth + pieceWidth + w > width && (line.length || piece)) {
            if (piece) line.push({ ...atom, text: piece, width: pieceWidth });
            lineWidth += pieceWidth;
            finish();
            piece = '';
            pieceWidth = 0;
          }
          piece += segment;
          pieceWidth += w;
        }
        if (piece) {
          line.push({ ...atom, text: piece, width: pieceWidth });
          lineWidth += pieceWidth;
        }
      }
    }
    finish();
  }

  /** The paragraph as measured atoms in logical order. */
  private atoms(paragraph: string, style: TextStyle): { atoms: Atom[]; rtl: boolean } {
    let levels: Uint8Array | undefined;
    let rtl = false;
    if (RTL.test(paragraph)) {
      const embedding = bidi.getEmbeddingLevels(paragraph);
      levels = embedding.levels;
      rtl = (embedding.paragraphs[0]?.level ?? 0) % 2 === 1;
    }
    const units: Unit[] = [];
    let index = 0;
    for (const ch of paragraph) {
      const cp = ch.codePointAt(0)!;
      units.push({ ch, cp, kind: kindOf(cp, ch), face: null, level: levels ? levels[index] : 0, space: /\s/u.test(ch) });
      index += ch.length;
    }
    this.assignFaces(units, style.weight);

    const atoms: Atom[] = [];
    let current: Atom | undefined;
    units.forEach((u, i) => {
      const prev = units[i - 1];
      // Right-to-left brackets and the like are drawn as their mirror image (UAX #9 rule L4).
      const ch = u.level % 2 === 1 ? (bidi.getMirroredCharacter(u.ch) ?? u.ch) : u.ch;
      const text = u.face ? ch : winAnsi(ch);
      const breakBefore =
        prev === undefined ||
        prev.space !== u.space ||
        (prev.ch === '-' && i >= 2 && !units[i - 2].space && /\p{L}/u.test(u.ch)) ||
        (!u.space && (isCjk(prev.cp) || isCjk(u.cp)) && !NO_BREAK_BEFORE.has(u.ch) && !NO_BREAK_AFTER.has(prev.ch));
      if (current && !breakBefore && current.face === u.face && current.level === u.level) {
        current.text += text;
        return;
      }
      current = { text, face: u.face, level: u.level, width: 0, space: u.space, glued: !breakBefore };
      atoms.push(current);
    });
    // Longer than any line: the width does not matter (fill cuts it between graphemes), and
    // shaping tens of thousands of characters at once would cost seconds.
    for (const a of atoms) a.width = a.text.length > NEVER_FITS ? Infinity : this.measure(a.face, style, a.text);
    return { atoms, rtl };
  }

  /** Script faces first; then spaces, digits and punctuation take a neighbour's face when it has the glyph. */
  private assignFaces(units: Unit[], weight: Weight): void {
    const covers = (face: Face | null, cp: number) => face !== null && face.font.hasGlyphForCodePoint(cp);
    const anyFace = (cp: number): Face | null => {
      for (const script of ['latin', 'cjk'] as const) {
        const face = this.fonts.face(script, weight);
        if (covers(face, cp)) return face;
      }
      return null;
    };
    for (const u of units) {
      if (u.kind === 'common') continue;
      const face = u.kind === 'latin' || u.kind === 'other' ? null : this.fonts.face(u.kind, weight);
      u.face = covers(face, u.cp) ? face : anyFace(u.cp);
    }
    const next: (Face | null)[] = new Array<Face | null>(units.length);
    let following: Face | null = null;
    for (let i = units.length - 1; i >= 0; i--) {
      next[i] = following;
      if (units[i].kind !== 'common') following = units[i].face;
    }
    let previous: Face | null = null;
    units.forEach((u, i) => {
      if (u.kind !== 'common') {
        previous = u.face;
        return;
      }
      u.face = covers(previous, u.cp) ? previous : covers(next[i], u.cp) ? next[i] : anyFace(u.cp);
    });
  }

  private select(face: Face | null, style: TextStyle): void {
    if (face) this.fonts.use(this.doc, face);
    else this.doc.font(STANDARD[style.weight]);
    this.doc.fontSize(style.size);
  }

  private measure(face: Face | null, style: TextStyle, text: string): number {
    this.select(face, style);
    return this.doc.widthOfString(text);
  }

  private drawLine(line: Line, x: number, top: number, width: number, style: TextStyle, align?: 'left' | 'right'): void {
    const baseline = top + this.metrics.ascent * style.size;
    const right = (align ?? (line.rtl ? 'right' : 'left')) === 'right';
    let cx = right ? x + width - line.width : x;
    for (const run of visualRuns(line)) {
      this.select(run[0].face, style);
      this.doc.fillColor(style.color);
      const runWidth = run.reduce((w, a) => w + a.width, 0);
      if (run[0].level % 2 === 1) {
        let edge = cx + runWidth;
        for (const atom of run) {
          edge -= atom.width;
          if (!atom.space) this.drawText(atom.text, atom.face, edge, baseline, style);
        }
      } else {
        this.drawText(run.map((a) => a.text).join(''), run[0].face, cx, baseline, style);
      }
      cx += runWidth;
    }
  }

  private drawText(text: string, face: Face | null, x: number, baseline: number, style: TextStyle): void {
    const { doc } = this;
    const draw = () => doc.text(text, x, baseline, { lineBreak: false, baseline: 'alphabetic', oblique: style.oblique });
    if (!face?.reorders) {
      draw();
      return;
    }
    // The glyphs of these scripts are not in character order: ActualText gives readers the text.
    // Poppler places that text with the graphics state in force at EMC, so the span is closed in
    // the same coordinates and font as the glyphs (pdfkit draws text in a flipped `q … Q` of its own).
    // The font's resource name is known only when faces are shared (fonts.ts); without it the text
    // is still read back, placed on a line of its own by `pdftotext -layout`.
    const h = doc.page.height;
    const resource = this.fonts.resourceName(face);
    doc.save().transform(1, 0, 0, -1, 0, h);
    if (resource) doc.addContent(`/${resource} ${style.size} Tf`);
    doc.markContent('Span', { actual: text });
    doc.save().transform(1, 0, 0, -1, 0, h);
    draw();
    doc.restore();
    doc.endMarkedContent();
    doc.restore();
  }
}

function lineMetrics(face: Face): { ascent: number; height: number } {
  const f = face.font;
  return { ascent: f.ascent / f.unitsPerEm, height: (f.ascent - f.descent + f.lineGap) / f.unitsPerEm };
}

/** Atoms grouped into words (no break inside) and runs of spaces, with their widths. */
function words(atoms: readonly Atom[]): { space: boolean; atoms: Atom[]; width: number }[] {
  const out: { space: boolean; atoms: Atom[]; width: number }[] = [];
  for (const atom of atoms) {
    const last = out[out.length - 1];
    if (last && (atom.glued || (atom.space && last.space))) {
      last.atoms.push(atom);
      last.width += atom.width;
    } else {
      out.push({ space: atom.space, atoms: [atom], width: atom.width });
    }
  }
  return out;
}

/**
 * The line's atoms as runs of one face and level, in display order: UAX #9 rule L2 reverses every
 * maximal sequence of runs at or above each odd level, from the highest level down.
 */
function visualRuns(line: Line): Atom[][] {
  const runs: Atom[][] = [];
  for (const atom of line.atoms) {
    const run = runs[runs.length - 1];
    if (run && run[0].face === atom.face && run[0].level === atom.level) run.push(atom);
    else runs.push([atom]);
  }
  const levels = runs.map((r) => r[0].level);
  const highest = Math.max(0, ...levels);
  const lowestOdd = Math.min(...levels.filter((l) => l % 2 === 1), highest + 1);
  for (let level = highest; level >= lowestOdd; level--) {
    for (let i = 0; i < runs.length; i++) {
      if (levels[i] < level) continue;
      let j = i;
      while (j + 1 < runs.length && levels[j + 1] >= level) j++;
      reverse(runs, i, j);
      reverse(levels, i, j);
      i = j;
    }
  }
  return runs;
}

function reverse<T>(items: T[], from: number, to: number): void {
  for (let a = from, b = to; a < b; a++, b--) [items[a], items[b]] = [items[b], items[a]];
}
