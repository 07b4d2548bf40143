import archiver from 'archiver';
import { once } from 'node:events';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ByteCounter, RunGuard, toError, ZIP_BUFFER_BYTES } from './flow';
import type { FontBook } from './fonts';
import { renderPermitPdf } from './pdf';
import type { ExportPermit, ExportResult } from './types';

/** `PTW_<permit_number>.pdf`; path separators and other odd characters become `_`. */
export function pdfEntryName(permitNumber: string): string {
  return `PTW_${permitNumber.replace(/[^A-Za-z0-9._-]/g, '_')}.pdf`;
}

/**
 * Streams a ZIP with one `PTW_<permit_number>.pdf` per permit into `out` and ends it.
 *
 * Permits are rendered one at a time: the next one is read from `permits` only after the archive
 * has consumed the previous PDF, and the archive only consumes as fast as `out` accepts bytes, so
 * memory holds about one PDF whatever the number of permits; only the ZIP's central directory,
 * written at the end, grows with the count (about 0.5 KB per entry).
 *
 * PDFs are set in `fonts` (default: the process's Noto fonts).
 *
 * On abort (`signal`), on an error of `out` or of a render, the promise rejects, `permits` is
 * closed, and `out` is destroyed rather than ended, so a truncated archive never looks complete.
 */
export async function streamPdfZip(permits: AsyncIterable<ExportPermit>, out: Writable, opts: { signal?: AbortSignal; fonts?: FontBook } = {}): Promise<ExportResult> {
  const guard = new RunGuard(opts.signal);
  const archive = archiver('zip', { zlib: { level: 6 }, highWaterMark: ZIP_BUFFER_BYTES });
  const counter = new ByteCounter();
  const piped = pipeline(archive, counter, out);
  piped.catch((err: unknown) => guard.fail(err));

  let permitCount = 0;
  let current: Readable | undefined;
  try {
    for await (const permit of guard.iterate(permits)) {
      current = renderPermitPdf(permit, opts.fonts);
      const consumed = once(archive, 'entry');
      archive.append(current, { name: pdfEntryName(permit.permit_number) });
      await guard.race(consumed);
      current = undefined;
      permitCount += 1;
    }
    await guard.race(archive.finalize());
    await guard.race(piped);
  } catch (err) {
    guard.fail(err);
    current?.destroy();
    if (!archive.destroyed) {
      archive.abort();
      archive.destroy(toError(err));
    }
    // The pipeline destroys `out` in turn; reject only once it has.
    await piped.catch(() => undefined);
    throw err;
  }
  return { permitCount, bytes: counter.bytes };
}
