import { z } from 'zod';
import { invalidArgument } from './errors';

/**
 * Parses client input with a zod schema; the first problem becomes the message (naming the field)
 * and all problems go in `details.errors`, so a bad request is a 400 that says what to fix.
 */
export function parseInput<S extends z.ZodType>(schema: S, data: unknown): z.infer<S> {
  const r = schema.safeParse(data);
  if (r.success) return r.data;
  const errors = r.error.issues.flatMap((i) => {
    const base = i.path.map(String).join('.');
    if (i.code === 'unrecognized_keys') return i.keys.map((k) => ({ field: base ? `${base}.${k}` : k, message: 'unknown field' }));
    return [{ field: base || '(body)', message: i.message }];
  });
  throw invalidArgument(`${errors[0].field}: ${errors[0].message}`, { field: errors[0].field, errors });
}

