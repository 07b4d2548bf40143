/**
 * Checks every gateway response an end-to-end test receives against the OpenAPI document (jest
 * `setupFilesAfterEnv` of the e2e project): global `fetch` is wrapped, and a response whose status,
 * required headers, media type or JSON body the document does not allow fails the call at once (the
 * error is thrown from `fetch`) and the file in `afterAll` (in case a test swallowed the error).
 *
 * Gateway responses are those under the API prefix or the probes, and `/metrics` of an origin
 * already seen answering those (the services serve their own `/metrics` too).
 */
import Ajv2020, { type ValidateFunction } from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import { openApiDocument } from '../../gateway/src/openapi/document';
import { API_PREFIX } from '../../gateway/src/routes';

interface HeaderSpec {
  required?: boolean;
  schema?: object;
}
interface ResponseSpec {
  headers?: Record<string, HeaderSpec>;
  content?: Record<string, { schema?: object }>;
}
interface Operation {
  operationId: string;
  responses: Record<string, ResponseSpec>;
}
interface PathSpec {
  pattern: RegExp;
  path: string;
  params: number;
  operations: Record<string, Operation>;
}

const DEFS_ID = 'https://ptw.local/openapi.json';
// One JSON Schema document holds the components; every reference points into it.
const doc = JSON.parse(JSON.stringify(openApiDocument()).replaceAll('"#/components/schemas/', `"${DEFS_ID}#/$defs/`)) as {
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, object>; responses: Record<string, ResponseSpec>; headers: Record<string, HeaderSpec> };
};
/** Follows a `#/components/{responses,headers}/…` reference. */
function deref<T>(o: T | { $ref: string }): T {
  if (!o || typeof o !== 'object' || !('$ref' in o)) return o;
  const [, kind, name] = /^#\/components\/(responses|headers)\/(.+)$/.exec(o.$ref) ?? [];
  const target = kind === 'responses' ? doc.components.responses[name] : kind === 'headers' ? doc.components.headers[name] : undefined;
  if (!target) throw new Error(`unresolved reference ${o.$ref}`);
  return target as T;
}
const ajv = new Ajv2020({ allErrors: true, strict: false });
addFormats(ajv);
ajv.addSchema({ $id: DEFS_ID, $defs: doc.components.schemas });

const paths: PathSpec[] = Object.entries(doc.paths)
  .map(([path, operations]) => ({
    path,
    operations,
    params: (path.match(/\{/g) ?? []).length,
    // Like the router (not strict): one more trailing slash still matches.
    pattern: new RegExp(`^${path.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\\?\{\w+\\?\}/g, '[^/]+')}/?$`),
  }))
  // A literal segment wins over a parameter (/permits/health/ is not /permits/{id}/).
  .sort((a, b) => a.params - b.params);

const compiled = new Map<object, ValidateFunction>();
function validatorFor(schema: object): ValidateFunction {
  let v = compiled.get(schema);
  if (!v) {
    v = ajv.compile(schema);
    compiled.set(schema, v);
  }
  return v;
}

const gatewayOrigins = new Set<string>();
const failures: string[] = [];
let checked = 0;

function isGatewayRequest(url: URL): boolean {
  if (url.pathname.startsWith(`${API_PREFIX}/`) || url.pathname === '/healthz' || url.pathname === '/readyz' || url.pathname.startsWith('/api/docs')) {
    gatewayOrigins.add(url.origin);
    return true;
  }
  return url.pathname === '/metrics' && gatewayOrigins.has(url.origin);
}

const mediaType = (contentType: string | null) => (contentType ?? '').split(';')[0].trim().toLowerCase();

async function problemsOf(method: string, url: URL, res: Response): Promise<string[]> {
  const problems: string[] = [];
  if (!res.headers.get('x-request-id')) problems.push('no X-Request-Id header');
  if (url.pathname.startsWith('/api/docs') && res.status === 200) return problems;
  // A CORS preflight answered for an allowed origin (PTW_CORS_ORIGINS) is the browser's question, not an operation.
  if (method === 'options' && res.status === 204 && res.headers.get('access-control-allow-origin')) return problems;
  const spec = paths.find((p) => p.pattern.test(url.pathname));
  const op = spec?.operations[method === 'head' ? 'get' : method];
  let response: ResponseSpec | undefined;
  if (!op) {
    // Unknown route → 404, known path with another method → 405 (501 for methods Koa does not know);
    // auth and the body reader answer before routing (401, 431, 400/413/415), whatever the path.
    const expected = [...(!spec ? [404] : [405, 501]), 401, 431, 400, 413, 415];
    if (!expected.includes(res.status)) problems.push(`${spec ? 'undocumented method' : 'undocumented path'} answered ${res.status}, expected ${expected.join(' or ')}`);
    response = { content: { 'application/json': { schema: { $ref: `${DEFS_ID}#/$defs/Error` } } } };
  } else {
    response = deref(op.responses[String(res.status)]);
    if (!response) {
      problems.push(`status ${res.status} is not documented for ${op.operationId} (documented: ${Object.keys(op.responses).join(', ')})`);
      return problems;
    }
  }
  for (const [name, spec] of Object.entries(response.headers ?? {})) {
    const h = deref(spec);
    const value = res.headers.get(name);
    if (value === null) {
      if (h.required) problems.push(`required header ${name} is missing`);
    } else if (h.schema && !validatorFor(h.schema)(value)) {
      problems.push(`header ${name}: ${JSON.stringify(value)} does not match ${JSON.stringify(h.schema)}`);
    }
  }
  const type = mediaType(res.headers.get('content-type'));
  const content = response.content ?? {};
  if (!Object.hasOwn(content, type)) {
    problems.push(`content type ${JSON.stringify(type)} is not documented (documented: ${Object.keys(content).join(', ')})`);
  } else if (type === 'application/json' && method !== 'head') {
    const text = await res.clone().text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      problems.push(`body is not JSON: ${text.slice(0, 200)}`);
      return problems;
    }
    const schema = content[type].schema;
    if (schema) {
      const validate = validatorFor(schema);
      if (!validate(body)) {
        const errors = (validate.errors ?? [])
          .slice(0, 5)
          .map((e) => `${e.instancePath || '(body)'} ${e.message}${e.params && 'additionalProperty' in e.params ? ` (${String(e.params.additionalProperty)})` : ''}`);
        problems.push(`body does not match the document: ${errors.join('; ')}; body: ${text.slice(0, 300)}`);
      }
    }
  }
  return problems;
}

function requestOf(input: string | URL | Request, init?: RequestInit): { method: string; url: URL } {
  const url = new URL(input instanceof Request ? input.url : String(input));
  const method = (init?.method ?? (input instanceof Request ? input.method : 'GET')).toLowerCase();
  return { method, url };
}

/** The failures recorded so far, forgotten (for the checker's own test, which provokes some). */
export function takeFailures(): string[] {
  return failures.splice(0);
}

const realFetch = globalThis.fetch;
globalThis.fetch = async function checkedFetch(input: string | URL | Request, init?: RequestInit): Promise<Response> {
  const res = await realFetch(input, init);
  const { method, url } = requestOf(input, init);
  if (!isGatewayRequest(url)) return res;
  checked++;
  const problems = await problemsOf(method, url, res);
  if (problems.length > 0) {
    const message = `OpenAPI check: ${method.toUpperCase()} ${url.pathname} → ${res.status}: ${problems.join(' | ')}`;
    failures.push(message);
    throw new Error(message);
  }
  return res;
};

afterAll(() => {
  globalThis.fetch = realFetch;
  if (failures.length > 0) throw new Error(`${failures.length} of ${checked} gateway responses did not match the OpenAPI document:\n${failures.join('\n')}`);
});
