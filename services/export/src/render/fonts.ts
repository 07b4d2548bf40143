import fs from 'node:fs';
import path from 'node:path';
import * as fontkit from 'fontkit';
import PDFDocument from 'pdfkit';

/*
 * The fonts of the PDF export: Noto faces from Debian's fonts-noto-core and fonts-noto-cjk, found
 * at run time. Each file is read and parsed once per process, when a text first needs it; every
 * document then embeds a subset of the faces it used (pdfkit subsets embedded fonts).
 *
 * Stock pdfkit (0.17: `registerFont`, `font()`) parses a font again for every document, and shapes
 * every word again per document: with the Noto faces' shaping tables a PDF then takes 2.5–3× the
 * time and CPU (docs/decisions/pdfkit-parsed-fonts.md, measured A/B). So, when the installed pdfkit
 * passes `sharedFontsSupport` (checked once per process), each document is handed the process's
 * parsed font through pdfkit's own EmbeddedFont class (not exported: taken from a probe document),
 * placed in the document's private font table `_fontFamilies` under the face's key, with a shared
 * `layoutCache`. When it does not, the faces go through `registerFont` (stock, slower) and a warning
 * says so once; the export itself is the same either way.
 */

export type Weight = 'regular' | 'bold';

/** Scripts with a face of their own, by the Unicode blocks of their letters (besides Latin and CJK). */
const SCRIPT_BLOCKS = {
  devanagari: [
    [0x900, 0x97f],
    [0xa8e0, 0xa8ff],
    [0x1cd0, 0x1cff],
  ],
  bengali: [[0x980, 0x9ff]],
  gurmukhi: [[0xa00, 0xa7f]],
  gujarati: [[0xa80, 0xaff]],
  tamil: [
    [0xb80, 0xbff],
    [0x11fc0, 0x11fff],
  ],
  telugu: [[0xc00, 0xc7f]],
  kannada: [[0xc80, 0xcff]],
  malayalam: [[0xd00, 0xd7f]],
  hebrew: [
    [0x590, 0x5ff],
    [0xfb1d, 0xfb4f],
  ],
  arabic: [
    [0x600, 0x6ff],
    [0x750, 0x77f],
    [0x870, 0x8ff],
    [0xfb50, 0xfdff],
    [0xfe70, 0xfeff],
  ],
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

/** One font file, read and parsed once per process. */
export interface Face {
  /** Its name in every document's font table (and, shared, its PDF resource name). */
  readonly key: string;
  readonly script: Script;
  /** The file's bytes: what `registerFont` is given when the parsed font cannot be shared. */
  readonly data: Buffer;
  /** Its PostScript name inside a collection (.ttc). */
  readonly postscriptName?: string;
  readonly font: fontkit.Font;
  /** Text readers need the characters spelled out (ActualText) to read its glyphs back in order. */
  readonly reorders: boolean;
}

type EmbeddedFontClass = new (doc: PDFKit.PDFDocument, font: fontkit.Font, id: string) => object;
/** What is read and written of a pdfkit document and font besides their public API. */
interface DocInternals {
  _font?: { constructor?: unknown } | null;
  _fontFamilies?: Record<string, object>;
}
interface FontInternals {
  font?: unknown;
  id?: unknown;
  layoutCache?: object;
}

let support: { embeddedFont: EmbeddedFontClass | null; reason: string } | undefined;

/**
 * Whether the installed pdfkit lets a document use a font parsed elsewhere (once per process): a
 * probe document given `data` must hold its font in `_font`, an instance of a class that takes
 * `(document, fontkit font, id)` and has a `layoutCache`, and `font(key)` must select what its
 * `_fontFamilies` holds under `key`. Any difference (a pdfkit upgrade) means the stock path.
 */
export function sharedFontsSupport(data: Buffer, font: fontkit.Font): { embeddedFont: EmbeddedFontClass | null; reason: string } {
  if (support) return support;
  const check = (): EmbeddedFontClass | string => {
    const probe = new PDFDocument({ autoFirstPage: false });
    probe.font(data);
    const internals = probe as unknown as DocInternals;
    const EmbeddedFont = internals._font?.constructor;
    const table = internals._fontFamilies;
    if (typeof EmbeddedFont !== 'function' || EmbeddedFont.length !== 3) return 'no EmbeddedFont class of (document, font, id) on _font';
    if (!table || typeof table !== 'object') return 'no _fontFamilies table';
    const shared = new (EmbeddedFont as EmbeddedFontClass)(probe, font, 'N0') as FontInternals;
    if (shared.font !== font || shared.id !== 'N0') return 'EmbeddedFont does not keep its font and id';
    if (!shared.layoutCache || typeof shared.layoutCache !== 'object') return 'EmbeddedFont has no layoutCache';
    table['ptw-probe'] = shared;
    probe.font('ptw-probe');
    if (internals._font !== shared) return "font(key) does not select _fontFamilies' entry";
    if (!(probe.widthOfString('A') > 0)) return 'the shared font does not measure text';
    return EmbeddedFont as EmbeddedFontClass;
  };
  let result: EmbeddedFontClass | string;
  try {
    result = check();
  } catch (err) {
    result = `probe failed: ${(err as Error).message}`;
  }
  support = typeof result === 'string' ? { embeddedFont: null, reason: result } : { embeddedFont: result, reason: 'ok' };
  return support;
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
  /** pdfkit's EmbeddedFont class when faces are shared; null on the stock path; undefined until a face loads. */
  private embeddedFont: EmbeddedFontClass | null | undefined;

  constructor(
    private readonly dirs: readonly string[],
    private readonly warn: (message: string) => void = (message) => process.emitWarning(message, { code: 'PTW_PDF_FONT' }),
    /** `false`: always pdfkit's stock `registerFont` (the fallback; tests and the benchmark). */
    private readonly share = true,
  ) {}

  /** Whether documents get the process's parsed faces (false: stock `registerFont`, or nothing loaded yet). */
  get shared(): boolean {
    return Boolean(this.embeddedFont);
  }

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
    const EmbeddedFont = this.embeddedFont;
    if (!EmbeddedFont) {
      doc.registerFont(face.key, face.data, face.postscriptName);
      doc.font(face.key);
      return;
    }
    const table = (doc as unknown as DocInternals)._fontFamilies!;
    if (!table[face.key]) {
      const font = new EmbeddedFont(doc, face.font, face.key) as FontInternals;
      font.layoutCache = this.layoutCache(face);
      table[face.key] = font;
    }
    doc.font(face.key);
  }

  /** The face's PDF resource name in every document, known only when faces are shared. */
  resourceName(face: Face): string | undefined {
    return this.embeddedFont ? face.key : undefined;
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
        this.embeddedFont ??= this.share ? this.sharing(data, font) : null;
        // pdfkit derives the subset's tag from the id's digits: `N<n>` as its own ids are `F<n>`.
        face = { key: `N${SPECS.indexOf(spec)}`, script: spec.script, data, postscriptName: spec.name, font, reorders: REORDERING.has(spec.script) };
      } catch (err) {
        this.warn(`PDF export: font file ${file} cannot be used (${(err as Error).message}); its text falls back to another font`);
      }
    }
    this.loaded.set(spec, face);
    return face;
  }

  private sharing(data: Buffer, font: fontkit.Font): EmbeddedFontClass | null {
    const { embeddedFont, reason } = sharedFontsSupport(data, font);
    if (!embeddedFont) this.warn(`PDF export: this pdfkit cannot share parsed fonts between documents (${reason}); each PDF parses its fonts again (slower)`);
    return embeddedFont;
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
