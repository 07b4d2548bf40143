import { z } from 'zod';

/**
 * Names of the document's components (components.schemas). Schemas are registered in zod's global
 * registry, the one `z.toJSONSchema` reads ids and descriptions from, as the very objects the routes
 * use; a request schema is documented in its input form (defaults make fields optional), a
 * response schema in its output form.
 */
export const componentIds = { request: new Set<string>(), response: new Set<string>() };

/** Registers `schema` as the component `id` and returns it (the same object). */
export function named<T extends z.ZodType>(kind: 'request' | 'response', id: string, schema: T, description?: string): T {
  if (componentIds.request.has(id) || componentIds.response.has(id)) throw new Error(`schema name ${id} is registered twice`);
  z.globalRegistry.add(schema, description ? { id, description } : { id });
  componentIds[kind].add(id);
  return schema;
}
