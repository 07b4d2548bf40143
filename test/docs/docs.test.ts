/**
 * Keeps the documentation true to itself and to the code (issue 24): the README stays a short guide,
 * every relative link of README.md and docs/**\/*.md reaches a file (and a heading, when it names
 * one), and every doc a code comment points at exists. Reads files only.
 */
import fs from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '../..');
const README_MAX_LINES = 250;

/** Markdown files the links are checked in: README.md and everything under docs/. */
function markdownFiles(): string[] {
  const out = [path.join(ROOT, 'README.md')];
  const walk = (dir: string): void => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.md')) out.push(p);
    }
  };
  walk(path.join(ROOT, 'docs'));
  return out;
}

/** The text of a Markdown file without fenced code blocks and inline code (their brackets are not links). */
function proseOf(markdown: string): string {
  return markdown.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '').replace(/`[^`\n]*`/g, '');
}

/** GitHub's anchor of a heading: formatting dropped, lower case, punctuation removed, spaces to hyphens. */
function slug(heading: string): string {
  return heading
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/[`*]/g, '')
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

const anchorCache = new Map<string, Set<string>>();

/** The anchors of a Markdown file's headings (outside code blocks), duplicates numbered as GitHub does. */
function anchorsOf(file: string): Set<string> {
  let anchors = anchorCache.get(file);
  if (!anchors) {
    anchors = new Set();
    const text = fs.readFileSync(file, 'utf8').replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '');
    for (const m of text.matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
      const base = slug(m[1]);
      let a = base;
      for (let i = 1; anchors.has(a); i++) a = `${base}-${i}`;
      anchors.add(a);
    }
    anchorCache.set(file, anchors);
  }
  return anchors;
}

/** Headings of a Markdown file as written (for `README "Heading"` references). */
function headingsOf(file: string): Set<string> {
  const text = fs.readFileSync(file, 'utf8').replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '');
  return new Set([...text.matchAll(/^#{1,6}\s+(.+?)\s*$/gm)].map((m) => m[1]));
}

interface Link {
  from: string;
  target: string;
}

/** Relative links and images of a Markdown file: `[text](target)`, external and mail links left out. */
function relativeLinks(file: string): Link[] {
  const prose = proseOf(fs.readFileSync(file, 'utf8'));
  const links: Link[] = [];
  for (const m of prose.matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
    const target = m[1];
    if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue;
    links.push({ from: path.relative(ROOT, file), target });
  }
  return links;
}

/** Problem with one link, or undefined when it reaches an existing file (and heading). */
function checkLink(link: Link): string | undefined {
  const [rawPath, anchor] = link.target.split('#', 2);
  const fromAbs = path.join(ROOT, link.from);
  const target = rawPath ? path.resolve(path.dirname(fromAbs), decodeURIComponent(rawPath)) : fromAbs;
  if (!fs.existsSync(target)) return `${link.from}: ${link.target} → no such file`;
  if (anchor) {
    if (!target.endsWith('.md')) return `${link.from}: ${link.target} → an anchor into a file that is not Markdown`;
    if (!anchorsOf(target).has(anchor)) return `${link.from}: ${link.target} → no heading with that anchor in ${path.relative(ROOT, target)}`;
  }
  return undefined;
}

const SOURCE_DIRS = ['gateway', 'libs', 'services', 'test', 'deploy', '.ci'];
const SOURCE_FILES = ['Makefile', 'docker-compose.yml', 'Dockerfile', 'package.json'];
const SOURCE_EXT = /\.(ts|js|mjs|cjs|go|ya?ml|sh|json)$|^run$/;
const SKIP_DIRS = new Set(['node_modules', 'dist', 'gen', 'bin', 'dashboards']);

/** Code, configuration and scripts whose comments may point at documentation. */
function sourceFiles(): string[] {
  const out = SOURCE_FILES.map((f) => path.join(ROOT, f)).filter((f) => fs.existsSync(f));
  const walk = (dir: string): void => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) {
        if (!SKIP_DIRS.has(e.name)) walk(p);
      } else if (SOURCE_EXT.test(e.name) && p !== __filename) out.push(p);
    }
  };
  for (const d of SOURCE_DIRS) if (fs.existsSync(path.join(ROOT, d))) walk(path.join(ROOT, d));
  return out;
}

/**
 * Where the code points at documentation: `docs/<path>.md`, optionally with `#anchor` or followed by
 * a quoted heading or phrase of that doc (`docs/operations.md "Logs"`), and `README "Heading"`.
 */
function docReferences(): { file: string; line: number; problem: string | undefined }[] {
  const refs: { file: string; line: number; problem: string | undefined }[] = [];
  const readmeHeadings = headingsOf(path.join(ROOT, 'README.md'));
  for (const file of sourceFiles()) {
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    lines.forEach((text, i) => {
      const at = { file: path.relative(ROOT, file), line: i + 1 };
      for (const m of text.matchAll(/(?<![\w/.-])(docs\/(?:[\w.-]+\/)*[\w.-]+\.md)(?:#([\w-]+)|\s+\(?"([^"]+)")?/g)) {
        const doc = path.join(ROOT, m[1]);
        let problem: string | undefined;
        if (!fs.existsSync(doc)) problem = `${m[1]} does not exist`;
        else if (m[2] && !anchorsOf(doc).has(m[2])) problem = `${m[1]} has no heading with anchor #${m[2]}`;
        else if (m[3] && !headingsOf(doc).has(m[3]) && !fs.readFileSync(doc, 'utf8').includes(m[3])) problem = `${m[1]} has neither a heading nor the words "${m[3]}"`;
        refs.push({ ...at, problem });
      }
      for (const m of text.matchAll(/README "([^"]+)"/g)) {
        refs.push({ ...at, problem: readmeHeadings.has(m[1]) ? undefined : `README.md has no heading "${m[1]}"` });
      }
    });
  }
  return refs;
}

describe('documentation', () => {
  it('when the README is read, then it is at most 250 lines and names the two commands', () => {
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const lines = readme.replace(/\n$/, '').split('\n').length;
    expect(lines).toBeLessThanOrEqual(README_MAX_LINES);
    expect(readme).toMatch(/^make up\b/m);
    expect(readme).toMatch(/^make test\b/m);
  });

  it('when README.md and docs/ link to a file or a heading, then it exists', () => {
    const links = markdownFiles().flatMap(relativeLinks);
    expect(links.length).toBeGreaterThan(20);
    expect(links.map(checkLink).filter(Boolean)).toEqual([]);
  });

  it('when a code comment points at a doc or a README heading, then it exists', () => {
    const refs = docReferences();
    expect(refs.length).toBeGreaterThan(0);
    expect(refs.filter((r) => r.problem).map((r) => `${r.file}:${r.line}: ${r.problem}`)).toEqual([]);
  });

  it('when a heading is turned into an anchor, then it is the anchor GitHub makes', () => {
    expect(slug('Jobs (workflow service, Agenda 6)')).toBe('jobs-workflow-service-agenda-6');
    expect(slug('The local store: durability and clean-up')).toBe('the-local-store-durability-and-clean-up');
    expect(slug('What `make test` runs')).toBe('what-make-test-runs');
    expect(slug('Stores: what holds where')).toBe('stores-what-holds-where');
  });
});
