import { invalidArgument } from './errors';

const DAY_MS = 24 * 3600 * 1000;

/** Start of a health counter window: the given ISO time, or 24 hours ago when empty. */
export function since24h(since: string | undefined, now = new Date()): Date {
  if (!since) return new Date(now.getTime() - DAY_MS);
  const d = new Date(since);
  if (Number.isNaN(d.getTime())) throw invalidArgument('since: expected an ISO 8601 date-time', { field: 'since' });
  return d;
}
