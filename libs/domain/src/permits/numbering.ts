import type { Models } from '@ptw/db';
import { reserveNumbers } from '../bulk';

/**
 * Next permit number PTW-YYYY-NNNNNN. The counter's $inc is not atomic on FerretDB, so two
 * creators may get the same number: the permits' unique index refuses the second insert and the
 * caller retries with a fresh number (numbers may have gaps, never duplicates).
 */
export async function nextPermitNumber(models: Models, now: Date): Promise<string> {
  return (await reserveNumbers(models, now, 1))[0];
}
