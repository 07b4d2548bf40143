import { z } from 'zod';
import { invalidArgument } from './errors';

/**
 * Parses client input with a zod schema; the first problem becomes the message (naming the field)
 * and all problems go in `details.errors`, so a bad request is a 400 that says what to fix.
 */
export function parseInput<S extends z.ZodType>(schema: S, data: unknown, opts: { storable?: boolean } = {}): z.infer<S> {
  // An envelope whose parts are checked one by one (a sync batch's changes) opts out here.
  const unstorable = opts.storable === false ? undefined : storableIssue(data);
  if (unstorable) throw invalidArgument(`${unstorable.field}: ${unstorable.message}`, { field: unstorable.field, errors: [unstorable] });
  const r = schema.safeParse(data);
  if (r.success) return r.data;
  const errors = r.error.issues.flatMap((i) => {
    const base = i.path.map(String).join('.');
    if (i.code === 'unrecognized_keys') return i.keys.map((k) => ({ field: base ? `${base}.${k}` : k, message: 'unknown field' }));
    return [{ field: base || '(body)', message: i.message }];
  });
  // However many problems a body has, its answer stays small (it crosses the hop in a header).
  const shown = errors.slice(0, MAX_REPORTED_ERRORS).map((e) => ({ field: e.field.slice(0, 200), message: e.message.slice(0, 200) }));
  throw invalidArgument(`${shown[0].field}: ${shown[0].message}`, {
    field: shown[0].field,
    errors: shown,
    ...(errors.length > shown.length ? { truncated: true, error_count: errors.length } : {}),
  });
}

/** At most this many problems are listed in a 400's details (`truncated` and `error_count` say when there were more). */
export const MAX_REPORTED_ERRORS = 20;

/**
 * The first thing in `value` that no store can hold (SPEC §4): a NUL character in any string, or an
 * object key that contains `.` or NUL or starts with `$` (MongoDB refuses such keys; PostgreSQL's
 * JSONB, under FerretDB, refuses NUL). Iterative and bounded by the value's size: nothing is parsed twice.
 */
export function storableIssue(value: unknown): { field: string; message: string } | undefined {
  const stack: { v: unknown; path: string }[] = [{ v: value, path: '' }];
  const field = (p: string) => (p || '(body)').slice(0, 200);
  while (stack.length) {
    const { v, path } = stack.pop()!;
    if (typeof v === 'string') {
      if (v.includes('\u0000')) return { field: field(path), message: 'must not contain a NUL character (U+0000)' };
      // The store would write U+FFFD in its place: two checklist keys could become one, silently.
      if (!v.isWellFormed()) return { field: field(path), message: 'must be well-formed Unicode (a lone surrogate)' };
    } else if (Array.isArray(v)) {
      v.forEach((x, i) => stack.push({ v: x, path: path ? `${path}.${i}` : String(i) }));
    } else if (v && typeof v === 'object' && !(v instanceof Date)) {
      for (const [k, x] of Object.entries(v)) {
        const p = path ? `${path}.${k}` : k;
        if (k.includes('\u0000')) return { field: field(path || '(body)'), message: 'keys must not contain a NUL character (U+0000)' };
        if (k.includes('.') || k.startsWith('$')) return { field: field(p), message: 'keys must not contain "." or start with "$"' };
        if (!k.isWellFormed()) return { field: field(path || '(body)'), message: 'keys must be well-formed Unicode (a lone surrogate)' };
        stack.push({ v: x, path: p });
      }
    }
  }
  return undefined;
}
