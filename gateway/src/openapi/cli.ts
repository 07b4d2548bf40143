/**
 * `npm run openapi -- [file] [--server URL]`: writes the OpenAPI document (for client generators)
 * to `file`, default openapi.json; `-` writes it to stdout.
 */
import fs from 'node:fs';
import { openApiDocument } from './document';

function main(argv: string[]): void {
  let file = 'openapi.json';
  let server = '/';
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--server') server = argv[++i] ?? '';
    else file = argv[i];
  }
  if (!server) throw new Error('--server needs a URL, e.g. http://127.0.0.1:8080');
  const text = `${JSON.stringify(openApiDocument(undefined, server), null, 2)}\n`;
  if (file === '-') process.stdout.write(text);
  else {
    fs.writeFileSync(file, text);
    process.stderr.write(`wrote ${file}\n`);
  }
}

try {
  main(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exitCode = 2;
}
