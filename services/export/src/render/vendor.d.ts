/* The few parts of fontkit 2 the PDF renderer uses; the package ships no typings. */

declare module 'fontkit' {
  export interface Font {
    postscriptName: string;
    unitsPerEm: number;
    ascent: number;
    descent: number;
    lineGap: number;
    hasGlyphForCodePoint(codePoint: number): boolean;
  }
  /** A font, or the font named `postscriptName` of a collection (.ttc); null when it has none of that name. */
  export function create(buffer: Buffer, postscriptName?: string): Font | null;
}
