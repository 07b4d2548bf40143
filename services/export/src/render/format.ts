import type { ExportPermit, OptionalDate } from './types';

/** ISO 8601 in UTC to the second (`2025-03-01T08:00:00Z`); empty for a missing or invalid date. */
export function isoDate(d: OptionalDate): string {
  if (!d || Number.isNaN(d.getTime())) return '';
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** `Name (id)` when the record knows the user's name, else the bare id; empty when no user. */
export function personLabel(p: Pick<ExportPermit, 'user_names'>, userId: string | null | undefined): string {
  if (!userId) return '';
  const name = p.user_names?.[userId];
  return name ? `${name} (${userId})` : userId;
}

const pad = (n: number) => String(n).padStart(2, '0');

/** `permits_bulk_YYYYmmdd_HHMMSS.zip` (pdf) or `.xlsx` (excel), stamped in UTC (SPEC §7). */
export function exportFilename(kind: 'pdf' | 'excel', now: Date): string {
  const stamp = `${now.getUTCFullYear()}${pad(now.getUTCMonth() + 1)}${pad(now.getUTCDate())}_` + `${pad(now.getUTCHours())}${pad(now.getUTCMinutes())}${pad(now.getUTCSeconds())}`;
  return `permits_bulk_${stamp}.${kind === 'pdf' ? 'zip' : 'xlsx'}`;
}
