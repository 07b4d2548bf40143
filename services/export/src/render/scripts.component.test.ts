import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import PDFDocument from 'pdfkit';
import { FontBook, NOTO_DIRS, notoFonts, sharedFontsSupport } from './fonts';
import { renderPermitPdf } from './pdf';
import { TextSetter, type Line } from './text';
import { mixedScriptPermit, samplePermit, SCRIPT_SAMPLES } from './samples';
import type { ExportPermit } from './types';

/*
 * PDFs in every script, read back with poppler (Debian's poppler-utils: pdftotext, pdffonts) and
 * set in Debian's Noto fonts (fonts-noto-core, fonts-noto-cjk; libs/devstore/sysdeps.sh installs both).
 */

for (const tool of ['pdftotext', 'pdffonts']) {
  try {
    execFileSync('which', [tool]);
  } catch {
    throw new Error(`${tool} is needed by these tests: apt-get install -y poppler-utils`);
  }
}
const NOTO_FILES = ['NotoSans-Regular.ttf', 'NotoSansDevanagari-Regular.ttf', 'NotoSansTamil-Regular.ttf', 'NotoSansArabic-Regular.ttf', 'NotoSansCJK-Regular.ttc'];
const notoPath = (file: string) => NOTO_DIRS.map((d) => path.join(d, file)).find((f) => fs.existsSync(f));
const absent = NOTO_FILES.filter((f) => !notoPath(f));
if (absent.length) throw new Error(`Noto fonts are needed by these tests (${absent.join(', ')}): apt-get install -y fonts-noto-core fonts-noto-cjk`);

async function render(p: ExportPermit, fonts?: FontBook): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of renderPermitPdf(p, fonts)) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

const pdfToText = (pdf: Buffer, ...args: string[]) => execFileSync('pdftotext', [...args, '-', '-'], { input: pdf, encoding: 'utf8' });
/** Embedded fonts as `name subset` per line (the subset tag stripped). */
function embeddedFonts(pdf: Buffer): string[] {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-pdffonts-'));
  try {
    fs.writeFileSync(path.join(dir, 'a.pdf'), pdf);
    const rows = execFileSync('pdffonts', [path.join(dir, 'a.pdf')], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .slice(2);
    return rows
      .map((r) => r.split(/\s+/))
      .map((c) => `${c[0].replace(/^[A-Z]{6}\+/, '')} emb=${c[c.length - 5]} sub=${c[c.length - 4]}`)
      .sort();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** A font folder holding only `files` of the Noto fonts (symbolic links), plus `extra` files. */
function fontDir(files: string[], extra: Record<string, string> = {}): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-fonts-'));
  for (const f of files) fs.symlinkSync(notoPath(f)!, path.join(dir, f));
  for (const [name, content] of Object.entries(extra)) fs.writeFileSync(path.join(dir, name), content);
  return dir;
}

describe('PDF export in every script', () => {
  let pdf: Buffer;
  beforeAll(async () => {
    pdf = await render(mixedScriptPermit(4));
  }, 60_000);

  it.each([
    ['a Devanagari title', `${SCRIPT_SAMPLES.devanagari} 4`],
    ['a Tamil location', SCRIPT_SAMPLES.tamil],
    ['an Arabic isolation point', SCRIPT_SAMPLES.arabic],
    ['an Arabic name (right to left, beside Latin)', SCRIPT_SAMPLES.arabicName],
    ['a Chinese description', SCRIPT_SAMPLES.chinese],
    ['a Devanagari name in a table', 'मुख्य अभियंता'],
    ['Chinese in a table', '主断路器 2 号'],
  ])('when the permit has %s, then pdftotext reads it back (plain and -layout)', (_what, sample) => {
    expect(pdfToText(pdf)).toContain(sample);
    expect(pdfToText(pdf, '-layout')).toContain(sample);
  });

  it('when a permit is in other scripts of India or in Hebrew, then each has its Noto face and pdftotext reads it back', async () => {
    const samples = ['ওয়েল্ডিং কাজ', 'వెల్డింగ్ పని', 'ವೆಲ್ಡಿಂಗ್ ಕೆಲಸ', 'വെൽഡിംഗ് ജോലി', 'વેલ્ડિંગ કામ', 'ਵੈਲਡਿੰਗ ਕੰਮ', 'עבודות ריתוך'];
    const p = samplePermit(9);
    p.isolation_points = samples.map((name, k) => ({ ...p.isolation_points[0], name, lock_ids: [`L-${k}`] }));
    const other = await render(p);
    for (const sample of samples) expect(pdfToText(other)).toContain(sample);
    for (const family of ['Bengali', 'Telugu', 'Kannada', 'Malayalam', 'Gujarati', 'Gurmukhi', 'Hebrew']) {
      expect(embeddedFonts(other)).toContain(`NotoSans${family}-Regular emb=yes sub=yes`);
    }
  });

  it('when the permit mixes scripts, then the Latin text, sections and "?"-free output are as before', () => {
    const text = pdfToText(pdf);
    expect(text).toContain('PTW-2025-000004');
    expect(text).toMatch(/Planned start\s+2025-03-01T09:00:00Z/);
    for (const section of ['Details', 'Personnel', 'Isolation register', 'Closeout checklist', 'Audit log']) expect(text).toContain(section);
    expect(text).toContain('Wanda Worker (u-worker)');
    expect(text).not.toContain('?');
  });

  it('when the permit uses five scripts, then each Noto face is embedded as a subset, and no standard font', () => {
    expect(embeddedFonts(pdf)).toEqual(
      [
        'NotoSans-Bold emb=yes sub=yes',
        'NotoSans-Regular emb=yes sub=yes',
        'NotoSansArabic-Regular emb=yes sub=yes',
        'NotoSansCJKsc-Regular emb=yes sub=yes',
        'NotoSansDevanagari-Bold emb=yes sub=yes',
        'NotoSansDevanagari-Regular emb=yes sub=yes',
        'NotoSansTamil-Regular emb=yes sub=yes',
      ].sort(),
    );
  });

  it('when a permit is Latin only, then only Noto Sans regular and bold are embedded, and the file stays small', async () => {
    const latin = await render(samplePermit(5));
    expect(embeddedFonts(latin)).toEqual(['NotoSans-Bold emb=yes sub=yes', 'NotoSans-Regular emb=yes sub=yes']);
    expect(latin.length).toBeLessThan(40_000);
  });

  it('when an Arabic text contains digits and brackets, then they are read in their place (not mirrored)', () => {
    expect(pdfToText(pdf)).toContain('(u-super)');
    expect(pdfToText(pdf)).toMatch(/12/);
  });

  it('when a right-to-left cell is too long, then it is cut with "…" like any other cell', async () => {
    const p = mixedScriptPermit(6);
    p.closeout!.checklist.area_clean.comments = `${SCRIPT_SAMPLES.arabic} `.repeat(400);
    const text = pdfToText(await render(p));
    expect(text).toContain('…');
    expect(text.split(SCRIPT_SAMPLES.arabic).length - 1).toBeLessThan(100);
  });
});

describe("pdfkit's private font table (docs/decisions/pdfkit-parsed-fonts.md)", () => {
  it('when pdfkit is the installed version, then documents get the process-wide parsed faces (fails on an incompatible pdfkit upgrade)', async () => {
    const fonts = notoFonts();
    await render(samplePermit(11), fonts);
    const latin = fonts.face('latin', 'regular')!;
    expect(sharedFontsSupport(latin.data, latin.font).reason).toBe('ok');
    expect(fonts.shared).toBe(true);
  });

  it("when a Devanagari or Tamil value sits beside its label, then pdftotext -layout reads it on the label's line", async () => {
    const layout = pdfToText(await render(mixedScriptPermit(4)), '-layout');
    expect(layout).toMatch(new RegExp(`Location +${SCRIPT_SAMPLES.tamil}`));
    expect(layout).toMatch(/Approver +मुख्य अभियंता \(u-manager\)/);
  });

  it('when faces are not shared (the stock registerFont fallback), then every script is read back, the same subsets are embedded, and nothing is reported', async () => {
    const warnings: string[] = [];
    const stock = new FontBook(NOTO_DIRS, (m) => warnings.push(m), false);
    const pdf = await render(mixedScriptPermit(4), stock);
    expect(stock.shared).toBe(false);
    const text = pdfToText(pdf);
    for (const sample of [`${SCRIPT_SAMPLES.devanagari} 4`, SCRIPT_SAMPLES.tamil, SCRIPT_SAMPLES.arabic, SCRIPT_SAMPLES.chinese, 'मुख्य अभियंता', 'PTW-2025-000004'])
      expect(text).toContain(sample);
    expect(embeddedFonts(pdf)).toEqual(embeddedFonts(await render(mixedScriptPermit(4))));
    expect(warnings).toEqual([]);
  });
});

describe('font files missing or broken', () => {
  it('when a script has no font file, then the export still succeeds, that script prints "?", the rest in Noto, and it is reported once', async () => {
    const dir = fontDir(['NotoSans-Regular.ttf', 'NotoSans-Bold.ttf', 'NotoSansDevanagari-Regular.ttf']);
    const warnings: string[] = [];
    const fonts = new FontBook([dir], (m) => warnings.push(m));
    try {
      const first = pdfToText(await render(mixedScriptPermit(1), fonts));
      await render(mixedScriptPermit(2), fonts);
      expect(first).toContain(`${SCRIPT_SAMPLES.devanagari} 1`);
      expect(first).not.toContain(SCRIPT_SAMPLES.tamil);
      expect(first).toContain('???');
      expect(first).toContain('PTW-2025-000001');
      expect(warnings.filter((w) => w.includes('NotoSansTamil-Regular.ttf'))).toHaveLength(1);
      expect(warnings.filter((w) => w.includes('NotoSansDevanagari-Bold.ttf'))).toHaveLength(1);
      expect(warnings.every((w) => w.includes('not found'))).toBe(true);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('when a font file is not a font, or no folder has fonts, then text falls back to Helvetica and the export succeeds', async () => {
    const dir = fontDir(['NotoSans-Bold.ttf'], { 'NotoSans-Regular.ttf': 'not a font' });
    const warnings: string[] = [];
    try {
      const text = pdfToText(await render(samplePermit(3), new FontBook([dir], (m) => warnings.push(m))));
      expect(text).toContain('Pump seal replacement 3');
      expect(warnings.some((w) => w.includes('NotoSans-Regular.ttf') && w.includes('cannot be used'))).toBe(true);
      const none = await render(mixedScriptPermit(3), new FontBook([], () => undefined));
      expect(embeddedFonts(none).every((f) => f.startsWith('Helvetica'))).toBe(true);
      expect(pdfToText(none)).toContain('PTW-2025-000003');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('when text holds emoji, scripts without a face, bidi overrides, lone surrogates or control characters, then the PDF is still made', async () => {
    const p = samplePermit(8);
    p.title = 'Fire 🔥 ✓ Ωμέγα Привет ไทย עברית \u202eoverride\u202c \u200f lone \ud800 end';
    p.location = '\u0000\u0007\u0301';
    const text = pdfToText(await render(p));
    expect(text).toContain('Ωμέγα Привет');
    expect(text).toContain('end');
  });

  it('when the process renders many PDFs, then every one uses the same loaded faces', async () => {
    const fonts = notoFonts();
    const before = fonts.face('cjk', 'regular');
    await render(mixedScriptPermit(7), fonts);
    expect(notoFonts()).toBe(fonts);
    expect(fonts.face('cjk', 'regular')).toBe(before);
    expect(fonts.face('cjk', 'bold')).toBe(before);
  });
});

describe('line composition', () => {
  const style = { size: 10, weight: 'regular' as const, color: '#000' };
  const setter = () => new TextSetter(new PDFDocument(), notoFonts());
  const texts = (lines: Line[]) => lines.map((l) => l.atoms.map((a) => a.text).join(''));

  it('when Chinese has no spaces, then lines break between characters, never before a closing mark', () => {
    const lines = texts(setter().lines('更换锅炉房泵的机械密封。管线已排空并通风，电机已在上锁。'.repeat(3), style, 60));
    expect(lines.length).toBeGreaterThan(5);
    expect(lines.every((l) => !/^[。，]/.test(l))).toBe(true);
    expect(lines.join('')).toBe('更换锅炉房泵的机械密封。管线已排空并通风，电机已在上锁。'.repeat(3));
  });

  it('when a word is longer than the line, then it is cut between graphemes (a Devanagari conjunct stays whole)', () => {
    const word = 'कार्य'.repeat(30);
    const lines = setter().lines(word, style, 80);
    expect(lines.length).toBeGreaterThan(3);
    expect(texts(lines).join('')).toBe(word);
    expect(texts(lines).every((l) => /^(का|र्य)/.test(l))).toBe(true);
    expect(lines.every((l) => l.width <= 80)).toBe(true);
  });

  it('when a code has a hyphen before a digit, then the line does not break inside it; before a letter it may', () => {
    const t = setter();
    expect(texts(t.lines('Isolate valve V-12', style, 75))).toEqual(['Isolate valve', 'V-12']);
    expect(texts(t.lines('Fire-retardant', style, 50))).toEqual(['Fire-', 'retardant']);
  });

  it('when a paragraph starts in Arabic, then it is right to left, its brackets mirrored and its digits a left-to-right run', () => {
    const [line] = setter().lines('محمد العلي (u-super) 12', style, 400);
    expect(line.rtl).toBe(true);
    expect(
      line.atoms
        .filter((a) => a.level % 2 === 1)
        .map((a) => a.text)
        .join(''),
    ).toContain(')');
    expect(line.atoms.find((a) => a.text.includes('12'))!.level % 2).toBe(0);
  });

  it('when text is cut, then the last kept line ends in "…" and still fits', () => {
    const t = setter();
    const lines = t.clip(t.lines('word '.repeat(100), style, 100), 3, style, 100);
    expect(lines).toHaveLength(3);
    expect(texts(lines)[2].endsWith('…')).toBe(true);
    expect(lines[2].width).toBeLessThanOrEqual(100);
  });
});
