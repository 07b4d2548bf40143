/**
 * Serves the OpenAPI document and its reference page (swagger-ui-dist, from the package: no CDN).
 * Both are public, like the probes: a client generator or a reader needs no token.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Context } from 'koa';
import { HttpError } from '../errors';
import { API_PREFIX } from '../routes';
import type { GatewayState } from '../state';
import { openApiDocument } from './document';

export const OPENAPI_PATH = `${API_PREFIX}/openapi.json`;
export const DOCS_PATH = '/api/docs/';

const INDEX_HTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<title>PTW platform HTTP API</title>
<link rel="stylesheet" href="swagger-ui.css">
<link rel="icon" type="image/png" href="favicon-32x32.png" sizes="32x32">
</head>
<body>
<div id="swagger-ui"></div>
<script src="swagger-ui-bundle.js"></script>
<script src="init.js"></script>
</body>
</html>
`;

// A file of its own, not an inline script, so the page's CSP can forbid inline scripts.
const INIT_JS = `window.addEventListener('load', function () {
  window.ui = SwaggerUIBundle({ url: ${JSON.stringify(OPENAPI_PATH)}, dom_id: '#swagger-ui', deepLinking: true });
});
`;

// Nothing from outside the gateway and no inline script or style: swagger-ui sets its styles through
// the DOM (CSSOM), which a CSP does not restrict (the browser test would see a violation).
const DOCS_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** The package files the page loads, by the name it asks for (nothing else of the package is reachable). */
const PACKAGE_FILES: Record<string, string> = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'application/javascript; charset=utf-8',
  'favicon-32x32.png': 'image/png',
};

interface Asset {
  type: string;
  body: string | Buffer;
}

/** GET/HEAD of the document (`/api/v1/ptw/openapi.json`) and of the reference page (`/api/docs/`). */
export function docsMiddleware() {
  const packageDir = path.dirname(require.resolve('swagger-ui-dist/package.json'));
  const assets = new Map<string, Asset>([
    ['', { type: 'text/html; charset=utf-8', body: INDEX_HTML }],
    ['init.js', { type: 'application/javascript; charset=utf-8', body: INIT_JS }],
  ]);
  let documentJson: string | undefined;

  return async (ctx: Context, next: () => Promise<void>) => {
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return next();
    if (ctx.path === OPENAPI_PATH) {
      (ctx.state as GatewayState).endpoint = OPENAPI_PATH;
      documentJson ??= JSON.stringify(openApiDocument());
      ctx.type = 'application/json';
      ctx.set('Cache-Control', 'no-cache');
      ctx.body = documentJson;
      return;
    }
    if (ctx.path === '/api/docs') {
      ctx.redirect(DOCS_PATH);
      return;
    }
    if (!ctx.path.startsWith(DOCS_PATH)) return next();
    (ctx.state as GatewayState).endpoint = DOCS_PATH;
    const name = ctx.path.slice(DOCS_PATH.length);
    let asset = assets.get(name);
    if (!asset && Object.hasOwn(PACKAGE_FILES, name)) {
      asset = { type: PACKAGE_FILES[name], body: await fs.promises.readFile(path.join(packageDir, name)) };
      assets.set(name, asset);
    }
    if (!asset) throw new HttpError(404, 'not_found', 'No such route');
    ctx.set('Content-Security-Policy', DOCS_CSP);
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('Cache-Control', name === '' ? 'no-cache' : 'public, max-age=3600');
    ctx.type = asset.type;
    ctx.body = asset.body;
  };
}
