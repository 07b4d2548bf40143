import fs from 'node:fs';
import path from 'node:path';
import * as fontkit from 'fontkit';
import PDFDocument from 'pdfkit';

/*
 * The fonts of the PDF export: Noto faces from Debian's fonts-noto-core and fonts-noto-cjk, found
 * at run time. Each file is read and parsed once per process, when a text first needs it; every
 * document then embeds a subset of the faces it used (pdfkit subsets embedded fonts).
 *
 * pdfkit (0.17) parses a font again for every document it is given to, and parsing the shaping
 * tables of one Noto face costs 0.1–0.5 s: far more than a whole permit's PDF. So each document is
 * handed the process's parsed font through pdfkit's own EmbeddedFont class, which holds everything
 * per document (subset, widths, ToUnicode map). That class is not exported: it is taken from a
 * probe document once, and registered under the face's key in the document's font table.
 */

export type Weight = 'regular' | 'bold';

/** Scripts with a face of their own, by the Unicode blocks of their letters (besides Latin and CJK). */
const SCRIPT_BLOCKS = {
  devanagari: [[0x900, 0x97f], [0xa8e0, 0xa8ff], [0x1cd0, 0x1cff]],
  bengali: [[0x980, 0x9ff]],
  gurmukhi: [[0xa00, 0xa7f]],
  gujarati: [[0xa80, 0xaff]],
  tamil: [[0xb80, 0xbff], [0x11fc0, 0x11fff]],
  telugu: [[0xc00, 0xc7f]],
  kannada: [[0xc80, 0xcff]],
  malayalam: [[0xd00, 0xd7f]],
  hebrew: [[0x590, 0x5ff], [0xfb1d, 0xfb4f]],
  arabic: [[0x600, 0x6ff], [0x750, 0x77f], [0x870, 0x8ff], [0xfb50, 0xfdff], [0xfe70, 0xfeff]],
} as const;
type BlockScript = keyof typeof SCRIPT_BLOCKS;
export type Script = 'latin' | 'cjk' | BlockScript;
const BLOCK_SCRIPTS = Object.keys(SCRIPT_BLOCKS) as BlockScript[];

/** The script whose block holds `cp`, among those with a face of their own. */
export function blockScript(cp: number): BlockScript | undefined {
  return BLOCK_SCRIPTS.find((script) => SCRIPT_BLOCKS[script].some(([from, to]) => cp >= from && cp <= to));
}

interface FaceSpec {
  script: Script;
  weight: Weight;
  file: string;
  /** PostScript name of the face inside a collection (.ttc). */
  name?: string;
}

/** Where Debian installs the Noto fonts. */
export const NOTO_DIRS: readonly string[] = ['/usr/share/fonts/truetype/noto', '/usr/share/fonts/opentype/noto'];

const FAMILY: Record<Exclude<Script, 'cjk'>, string> = {
  latin: 'NotoSans',
  devanagari: 'NotoSansDevanagari',
  bengali: 'NotoSansBengali',
  gurmukhi: 'NotoSansGurmukhi',
  gujarati: 'NotoSansGujarati',
  tamil: 'NotoSansTamil',
  telugu: 'NotoSansTelugu',
  kannada: 'NotoSansKannada',
  malayalam: 'NotoSansMalayalam',
  hebrew: 'NotoSansHebrew',
  arabic: 'NotoSansArabic',
};

/*
 * CJK has no bold here: a CJK subset weighs ~55 KB per document (fontkit keeps every subroutine
 * slot of the CFF outlines), so a second one for bold titles would double that; CJK is regular.
 * Simplified Chinese glyph forms are used for Han characters.
 */
const SPECS: readonly FaceSpec[] = [
  ...Object.entries(FAMILY).flatMap(([script, family]) =>
    (['regular', 'bold'] as const).map((weight) => ({ script: script as Script, weight, file: `${family}-${weight === 'bold' ? 'Bold' : 'Regular'}.ttf` })),
  ),
  { script: 'cjk', weight: 'regular', file: 'NotoSansCJK-Regular.ttc', name: 'NotoSansCJKsc-Regular' },
];

const LAYOUT_CACHE_WORDS = 5000;

/** Scripts whose glyphs are not drawn in the order of their characters (vowel signs, reph). */
const REORDERING: ReadonlySet<Script> = new Set(['devanagari', 'bengali', 'gurmukhi', 'gujarati', 'tamil', 'telugu', 'kannada', 'malayalam']);

/** One parsed font file, shared by every document of the process. */
export interface Face {
  /** Its name in every document's font table, and its PDF resource name. */
  readonly key: string;
  readonly script: Script;
  readonly font: fontkit.Font;
  /** Text readers need the characters spelled out (ActualText) to read its glyphs back in order. */
  readonly reorders: boolean;
}

type EmbeddedFontClass = new (doc: PDFKit.PDFDocument, font: fontkit.Font, id: string) => object;
let embeddedFontClass: EmbeddedFontClass | undefined;

/** Takes pdfkit's EmbeddedFont class from a probe document given one font file (once per process). */
function probeEmbeddedFontClass(data: Buffer): void {
  if (embeddedFontClass) return;
  const probe = new PDFDocument({ autoFirstPage: false });
  probe.font(data);
  embeddedFontClass = (probe as unknown as { _font: { constructor: EmbeddedFontClass } })._font.constructor;
}

/**
 * The faces of one process, loaded on first use. A missing or unreadable file is reported once
 * through `warn`; its text then falls back to the regular weight of its script, else to the
 * standard Helvetica (which prints what it cannot encode as `?`). An export never fails for a font.
 */
export class FontBook {
  private readonly loaded = new Map<FaceSpec, Face | null>();
  /** `script-weight` → the face it resolved to (a weight may fall back to regular). */
  private readonly chosen = new Map<string, Face | null>();
  private readonly caches = new Map<Face, { words: object; uses: number }>();

  constructor(
    private readonly dirs: readonly string[],
    private readonly warn: (message: string) => void = (message) => process.emitWarning(message, { code: 'PTW_PDF_FONT' }),
  ) {}

  /** The face for a script and weight, or null when none could be loaded. */
  face(script: Script, weight: Weight): Face | null {
    const key = `${script}-${weight}`;
    let face = this.chosen.get(key);
    if (face === undefined) {
      const exact = SPECS.find((s) => s.script === script && s.weight === weight);
      const regular = SPECS.find((s) => s.script === script && s.weight === 'regular')!;
      face = (exact && this.load(exact)) ?? this.load(regular);
      this.chosen.set(key, face);
    }
    return face;
  }

  /** Makes `face` usable in `doc` (once per document) and selects it. */
  use(doc: PDFKit.PDFDocument, face: Face): void {
    const table = (doc as unknown as { _fontFamilies: Record<string, object> })._fontFamilies;
    if (!table[face.key]) {
      const font = new (embeddedFontClass as EmbeddedFontClass)(doc, face.font, face.key) as { layoutCache?: object };
      font.layoutCache = this.layoutCache(face);
      table[face.key] = font;
    }
    doc.font(face.key);
  }

  /**
   * pdfkit's cache of shaped words (word → glyphs and positions), shared by the documents of the
   * process: shaping a word costs ~0.1 ms, and a permit's PDF sets a few hundred, mostly the same
   * words as the previous one. pdfkit fills it; it is replaced by an empty one once it holds
   * LAYOUT_CACHE_WORDS words (checked every few documents), so it stays bounded.
   */
  private layoutCache(face: Face): object {
    let cache = this.caches.get(face);
    if (!cache || (++cache.uses % 16 === 0 && Object.keys(cache.words).length > LAYOUT_CACHE_WORDS)) {
      cache = { words: Object.create(null) as object, uses: 0 };
      this.caches.set(face, cache);
    }
    return cache.words;
  }

  private load(spec: FaceSpec): Face | null {
    const known = this.loaded.get(spec);
    if (known !== undefined) return known;
    let face: Face | null = null;
    const file = this.dirs.map((d) => path.join(d, spec.file)).find((f) => fs.existsSync(f));
    if (!file) {
      this.warn(`PDF export: font file ${spec.file} not found in ${this.dirs.join(', ') || '(no folder)'}; its text falls back to another font`);
    } else {
      try {
        const data = fs.readFileSync(file);
        const font = fontkit.create(data, spec.name);
        if (!font) throw new Error(`no face ${spec.name}`);
        probeEmbeddedFontClass(data);
        // pdfkit derives the subset's tag from the id's digits: `N<n>` as its own ids are `F<n>`.
        face = { key: `N${SPECS.indexOf(spec)}`, script: spec.script, font, reorders: REORDERING.has(spec.script) };
      } catch (err) {
        this.warn(`PDF export: font file ${file} cannot be used (${(err as Error).message}); its text falls back to another font`);
      }
    }
    this.loaded.set(spec, face);
    return face;
  }
}

let noto: FontBook | undefined;

/** The process's Noto fonts (Debian's folders). */
export function notoFonts(): FontBook {
  noto ??= new FontBook(NOTO_DIRS);
  return noto;
}

/** No font files: every text is set in the standard Helvetica, as before Noto (the benchmark's baseline). */
export function standardFonts(): FontBook {
  return new FontBook([], () => undefined);
}
