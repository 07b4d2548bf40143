/**
 * Builds the OpenAPI 3.1 document from the route table (operations.ts) and the zod schemas the routes
 * validate with (JSON Schema 2020-12 is OpenAPI 3.1's schema dialect, so no conversion is needed).
 */
import { z } from 'zod';
import { API_PREFIX } from '../routes';
import { ROUTES, type RouteDoc } from './operations';
import { componentIds } from './registry';
import { errorResponse } from './responses';

type Json = Record<string, unknown>;

const SCHEMA_REF = '#/components/schemas/';

/** `format: date-time` says it all: zod's equivalent regular expression would only blur the document. */
function override(ctx: { jsonSchema: Json }): void {
  if (ctx.jsonSchema.format === 'date-time') delete ctx.jsonSchema.pattern;
}

/** components.schemas: every registered schema, in its input or output form (registry.ts). */
function components(): Record<string, Json> {
  const all = (io: 'input' | 'output') =>
    z.toJSONSchema(z.globalRegistry, { io, target: 'draft-2020-12', uri: (id) => `${SCHEMA_REF}${id}`, unrepresentable: 'any', override }).schemas as Record<string, Json>;
  const inputs = all('input');
  const outputs = all('output');
  const out: Record<string, Json> = {};
  for (const id of componentIds.request) out[id] = inputs[id];
  for (const id of componentIds.response) out[id] = outputs[id];
  for (const s of Object.values(out)) {
    delete s.$schema;
    delete s.$id;
  }
  return out;
}

/** A schema as a $ref when it is a named component, else inlined (with refs to named ones). */
function schemaOf(schema: z.ZodType, io: 'input' | 'output'): Json {
  const id = z.globalRegistry.get(schema)?.id;
  if (id) return { $ref: `${SCHEMA_REF}${id}` };
  const inline = z.toJSONSchema(schema, { io, target: 'draft-2020-12', unrepresentable: 'any', cycles: 'ref', reused: 'inline', override }) as Json;
  delete inline.$schema;
  // Named sub-schemas land in $defs: they are components already, so point there instead.
  delete inline.$defs;
  return JSON.parse(JSON.stringify(inline).replaceAll('"#/$defs/', `"${SCHEMA_REF}`)) as Json;
}

/** `/permits/:id/` → `/api/v1/ptw/permits/{id}/` */
export function openApiPath(r: Pick<RouteDoc, 'path' | 'absolute'>): string {
  return (r.absolute ? '' : API_PREFIX) + r.path.replace(/:(\w+)/g, '{$1}');
}

/** The error responses, each a component (components.responses) referenced by the operations. */
const ERRORS: Record<number, { name: string; description: string }> = {
  400: { name: 'BadRequest', description: 'Invalid input: the message and details name the offending field' },
  401: { name: 'Unauthenticated', description: 'Missing, invalid or expired bearer token' },
  403: { name: 'Forbidden', description: 'The caller’s role may not do this' },
  404: { name: 'NotFound', description: 'No such resource in the caller’s projects' },
  409: { name: 'Conflict', description: 'Conflict: stale version or concurrent change' },
  413: { name: 'PayloadTooLarge', description: 'Request body too large (a gzip or br body counts its decoded bytes)' },
  415: { name: 'UnsupportedMediaType', description: 'Request body is not application/json, or its Content-Encoding is not identity, gzip or br (the answer’s Accept-Encoding names those)' },
  429: { name: 'Throttled', description: 'Throttled: retry after Retry-After seconds' },
  431: { name: 'HeaderTooLarge', description: 'The Authorization header is over 8 KiB (a request head over 16 KiB is refused by the HTTP server before this, without a body)' },
  503: { name: 'Unavailable', description: 'A backend (service, or Redis for a fail-closed throttle scope) is unavailable; retry after Retry-After seconds' },
  504: { name: 'Timeout', description: 'A backend service did not answer in time' },
};

const ref = (kind: 'headers' | 'responses', name: string) => ({ $ref: `#/components/${kind}/${name}` });
const intHeader = (description: string, required: boolean) => ({ required, description, schema: { type: 'string', pattern: '^\\d+$' } });
const REQUEST_ID = ref('headers', 'XRequestId');
const RATE_HEADERS = {
  'X-RateLimit-Limit': 'Requests admitted per window in this scope',
  'X-RateLimit-Remaining': 'Requests left in the current window',
  'X-RateLimit-Reset': 'Unix time (seconds) when the window has room again',
};
const retryAfter = (description: string) => ({ 'Retry-After': intHeader(description, true) });

/** components.headers: the rate headers of a throttled route's answers are absent when Redis could not be asked. */
function headerComponents(): Json {
  const out: Json = {
    XRequestId: {
      required: true,
      description: 'The request id (the client’s X-Request-Id when valid, else generated); also in every log line of the request',
      schema: { type: 'string', minLength: 1 },
    },
  };
  for (const [name, description] of Object.entries(RATE_HEADERS)) out[name.replaceAll('-', '')] = intHeader(description, false);
  return out;
}

function errorComponent(status: number, schema: z.ZodType = errorResponse): Json {
  const headers: Json = { 'X-Request-Id': REQUEST_ID };
  // On a 429 the rate headers are always there.
  if (status === 429)
    Object.assign(headers, retryAfter('Whole seconds until a request would be admitted'), Object.fromEntries(Object.entries(RATE_HEADERS).map(([h, d]) => [h, intHeader(d, true)])));
  if (status === 503) Object.assign(headers, retryAfter('Seconds after which to try again'));
  if (status === 401) headers['WWW-Authenticate'] = { required: true, description: 'Bearer realm="ptw"', schema: { type: 'string' } };
  return { description: ERRORS[status].description, headers, content: { 'application/json': { schema: schemaOf(schema, 'output') } } };
}

function errorStatuses(r: RouteDoc): number[] {
  const s = new Set(r.errors ?? []);
  if (!r.public) [401, 431, 503, 504].forEach((c) => s.add(c));
  if (r.method !== 'get') [400, 413, 415].forEach((c) => s.add(c));
  if (r.scope) [429, 503].forEach((c) => s.add(c));
  return [...s].sort();
}

function successResponse(r: RouteDoc): Json {
  const headers: Json = { 'X-Request-Id': REQUEST_ID };
  if (r.scope) for (const name of Object.keys(RATE_HEADERS)) headers[name] = ref('headers', name.replaceAll('-', ''));
  if ('json' in r.ok) return { description: r.ok.description, headers, content: { 'application/json': { schema: schemaOf(r.ok.json, 'output') } } };
  if ('binary' in r.ok) {
    Object.assign(headers, {
      'Content-Disposition': { required: true, description: 'attachment; filename="…"', schema: { type: 'string', pattern: '^attachment' } },
      'X-Permit-Count': intHeader('How many permits the file holds', true),
    });
    return { description: r.ok.description, headers, content: { [r.ok.binary]: { schema: { type: 'string', contentMediaType: r.ok.binary } } } };
  }
  return { description: r.ok.description, headers, content: { [r.ok.text]: { schema: { type: 'string' } } } };
}

function parameters(r: RouteDoc): Json[] {
  const out: Json[] = [];
  for (const name of r.path.match(/:(\w+)/g)?.map((p) => p.slice(1)) ?? []) {
    out.push({ name, in: 'path', required: true, description: r.params?.[name], schema: { type: 'string' } });
  }
  if (r.query) {
    for (const [name, s] of Object.entries(r.query.shape)) {
      const schema = schemaOf(s as z.ZodType, 'input');
      const description = schema.description;
      delete schema.description;
      out.push({ name, in: 'query', required: false, description, schema });
    }
  }
  return out;
}

function operation(r: RouteDoc): Json {
  const description = [r.roles && `**Who:** ${r.roles}.`, r.scope && `**Throttle scope:** \`${r.scope}\` (429 with Retry-After when over the limit).`, r.description]
    .filter(Boolean)
    .join('\n\n');
  const op: Json = { operationId: r.operationId, tags: [r.tag], summary: r.summary };
  if (description) op.description = description;
  if (r.public) op.security = [];
  const params = parameters(r);
  if (params.length) op.parameters = params;
  // An empty body is read as {}: the body is optional when {} is valid.
  if (r.body) op.requestBody = { required: !r.body.safeParse({}).success, content: { 'application/json': { schema: schemaOf(r.body, 'input') } } };
  const responses: Json = { [String(r.ok.status)]: successResponse(r) };
  for (const s of errorStatuses(r)) {
    const body = r.errorBodies?.[s];
    responses[String(s)] = body ? errorComponent(s, body) : ref('responses', ERRORS[s].name);
  }
  op.responses = responses;
  return op;
}

/** The OpenAPI 3.1 document of the HTTP API. `server` is the base URL clients are told to use. */
export function openApiDocument(routes: RouteDoc[] = ROUTES, server = '/'): Json {
  const schemas = components();
  const paths: Record<string, Json> = {};
  for (const r of routes) {
    const p = (paths[openApiPath(r)] ??= {});
    if (p[r.method]) throw new Error(`${r.method} ${r.path} is documented twice`);
    p[r.method] = operation(r);
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'PTW platform HTTP API',
      version: '1.0.0',
      description:
        'Permit To Work backend (gateway). Errors are `{"error": {"code", "message", "details"?}}`; every response carries `X-Request-Id` ' +
        '(sent back when the client gives one). Bearer JWT on every route except the probes, /metrics and this document. ' +
        'The reference page (/api/docs/) and the admin console (/admin/) are pages for a browser, served without a token and outside this document. ' +
        'The probes, /metrics, this document and the reference page answer any method but GET and HEAD with 405 (`Allow: GET, HEAD`), without reading a body. ' +
        'Browser pages on other origins may call the API only from the origins listed in PTW_CORS_ORIGINS (CORS, none by default; a preflight needs no token and is not throttled). ' +
        'Answers of PTW_COMPRESS_MIN_BYTES (1 KiB) or more come compressed (gzip or br) to a client whose Accept-Encoding allows it, never the ZIP and XLSX exports; request bodies may be sent with Content-Encoding gzip or br, the body limit (413) counting their decoded bytes.',
    },
    servers: [{ url: server }],
    tags: ['Permits', 'Isolation', 'Closeout', 'Workflow', 'Sync', 'Exports', 'Notifications', 'Operations'].map((name) => ({ name })),
    security: [{ bearer: [] }],
    paths,
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'Claims sub, role, project_ids, exp; `npm run token` mints development tokens' } },
      schemas,
      headers: headerComponents(),
      responses: Object.fromEntries(Object.entries(ERRORS).map(([status, e]) => [e.name, errorComponent(Number(status))])),
    },
  };
}
