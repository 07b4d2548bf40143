#!/usr/bin/env node
/**
 * Bulk export renderers: time and peak memory of the PDF ZIP and the XLSX (plain and detailed) for
 * 100, 1000 and 5000 synthetic permits streamed to a byte-counting sink, each case in a fresh
 * process so that one case's heap does not inflate the next. Memory stays flat when the peaks of
 * 5000 permits are about those of 100 (ratio ≈ 1) while the count grows 50×. Peak RSS is sampled
 * every 50 ms; as V8 collects lazily it also shows garbage, so the live memory (heap used plus
 * Buffers right after a full GC, taken every LIVE_EVERY permits) is printed too, and the CPU time of
 * the case (steadier than wall time on a shared machine). Prints a table; asserts nothing.
 * Run after `npx tsc -b`:  node test/bench/export-render.js [kinds…, default all] [counts…, default 100 1000 5000]
 * e.g. `node test/bench/export-render.js pdf pdf-mixed pdf-helvetica 100 1000`
 *
 * A/B:  node test/bench/export-render.js ab [rounds, default 6] [A-kind/B-kind or kind…] [counts…]
 * runs each pair once per round, A then B or B then A (flipped every round), each in a fresh process,
 * and prints per round and as medians the time and CPU per permit and the ratios B/A (the two figures
 * of one round share the machine's speed of that moment). `pdf/pdf-stock` compares the PDF export with
 * the fonts shared between documents against pdfkit's stock `registerFont` (docs/decisions/pdfkit-parsed-fonts.md);
 * with BENCH_B_ROOT=<another built checkout>, B runs that checkout's code (e.g. the commit before a
 * change, built in a second worktree) and a bare kind compares the two checkouts.
 */
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { Writable } = require('node:stream');

const root = path.resolve(__dirname, '..', '..');
/** The renderers of a checkout (its `npx tsc -b` output). */
const distOf = (codeRoot) => path.join(codeRoot, 'services/export/dist/render');
let dist = distOf(root);
/**
 * `*-buffered` are the baselines: the naive approach (whole export in memory, then written).
 * `pdf` sets Latin-only permits in the Noto fonts, `pdf-mixed` permits in five scripts (Devanagari,
 * Tamil, Arabic, Chinese beside Latin), `pdf-helvetica` the Latin-only ones in the standard Helvetica
 * (no font embedded: the export before issue 15), the baseline of the two.
 */
const KINDS = ['pdf', 'pdf-mixed', 'pdf-stock', 'pdf-mixed-stock', 'pdf-helvetica', 'pdf-buffered', 'excel', 'excel-buffered', 'excel-detailed'];
const SAMPLE_MS = 50;
/** Permits per cursor batch: the source waits on "I/O" between batches, as a mongoose cursor does. */
const BATCH = 100;
const LIVE_EVERY = 250;

async function runCase(kind, count) {
  const { streamPdfZip, streamExcel, standardFonts, FontBook } = require(dist);
  const { NOTO_DIRS } = require(path.join(dist, 'fonts.js'));
  const { samplePermit, mixedScriptPermit } = require(path.join(dist, 'samples.js'));
  const sample = kind.startsWith('pdf-mixed') ? mixedScriptPermit : samplePermit;
  let peakLive = 0;
  const live = () => {
    global.gc();
    const m = process.memoryUsage();
    peakLive = Math.max(peakLive, m.heapUsed + m.arrayBuffers);
  };
  async function* permits() {
    for (let i = 1; i <= count; i++) {
      if (i % BATCH === 1) await new Promise((r) => setImmediate(r));
      if (i % LIVE_EVERY === 0) live();
      yield sample(i);
    }
  }
  let sunk = 0;
  const sink = new Writable({
    write(chunk, _enc, cb) {
      sunk += chunk.length;
      cb();
    },
  });
  live();
  const baseLive = peakLive;
  const base = process.memoryUsage();
  let peakRss = base.rss;
  let peakHeap = base.heapUsed;
  const sampler = setInterval(() => {
    const m = process.memoryUsage();
    peakRss = Math.max(peakRss, m.rss);
    peakHeap = Math.max(peakHeap, m.heapUsed);
  }, SAMPLE_MS);
  const t0 = process.hrtime.bigint();
  const cpu0 = process.cpuUsage();
  const result =
    kind === 'pdf' || kind === 'pdf-mixed'
      ? await streamPdfZip(permits(), sink)
      : kind === 'pdf-stock' || kind === 'pdf-mixed-stock'
        ? await streamPdfZip(permits(), sink, { fonts: new FontBook(NOTO_DIRS, undefined, false) })
        : kind === 'pdf-helvetica'
          ? await streamPdfZip(permits(), sink, { fonts: standardFonts() })
          : kind === 'pdf-buffered'
            ? await bufferedPdfZip(permits(), sink)
            : kind === 'excel-buffered'
              ? await bufferedExcel(permits(), sink)
              : await streamExcel(permits(), sink, { detailed: kind === 'excel-detailed' });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const used = process.cpuUsage(cpu0);
  const cpuSeconds = (used.user + used.system) / 1e6;
  clearInterval(sampler);
  live();
  if (result.permitCount !== count || result.bytes !== sunk) throw new Error(`bad result ${JSON.stringify(result)} (sink saw ${sunk} bytes)`);
  return { kind, count, seconds, cpuSeconds, bytes: result.bytes, baseRss: base.rss, peakRss, peakHeap, baseLive, peakLive };
}

/** Baseline: every PDF rendered into memory first, then one ZIP written at the end. */
async function bufferedPdfZip(permits, out) {
  const { renderPermitPdf } = require(dist);
  const archiver = require('archiver');
  const files = [];
  for await (const p of permits) {
    const chunks = [];
    for await (const c of renderPermitPdf(p)) chunks.push(c);
    files.push([`PTW_${p.permit_number}.pdf`, Buffer.concat(chunks)]);
  }
  const zip = archiver('zip', { zlib: { level: 6 } });
  let bytes = 0;
  zip.on('data', (c) => (bytes += c.length));
  const done = new Promise((resolve, reject) => {
    out.on('finish', resolve);
    zip.on('error', reject);
  });
  zip.pipe(out);
  for (const [name, buf] of files) zip.append(buf, { name });
  await zip.finalize();
  await done;
  return { permitCount: files.length, bytes };
}

/** Baseline: ExcelJS's in-memory workbook with the same Permits sheet, written once at the end. */
async function bufferedExcel(permits, out) {
  const ExcelJS = require('exceljs');
  const { PERMIT_HEADERS } = require(dist);
  const wb = new ExcelJS.Workbook();
  const ws = wb.addWorksheet('Permits');
  ws.addRow([...PERMIT_HEADERS]);
  let count = 0;
  for await (const p of permits) {
    count++;
    ws.addRow([
      p.permit_number,
      p.title,
      p.permit_type_name,
      p.status,
      p.priority,
      p.risk_level,
      p.risk_score,
      p.location,
      p.project_name,
      p.planned_start_time,
      p.planned_end_time,
      p.actual_start_time,
      p.actual_end_time,
      p.created_by,
      p.verifier_id,
      p.approver_id,
      p.submitted_at,
      p.verified_at,
      p.approved_at,
      p.created_at,
      p.updated_at,
    ]);
  }
  let bytes = 0;
  const counted = new (require('node:stream').Transform)({
    transform(c, _e, cb) {
      bytes += c.length;
      cb(null, c);
    },
  });
  counted.pipe(out);
  await wb.xlsx.write(counted);
  counted.end();
  await new Promise((r) => out.on('finish', r));
  return { permitCount: count, bytes };
}

const mb = (b) => (b / 1048576).toFixed(1);

function main() {
  if (process.argv[2] === '--case') {
    if (process.argv[5]) dist = distOf(process.argv[5]);
    runCase(process.argv[3], Number(process.argv[4])).then(
      (r) => process.stdout.write(JSON.stringify(r)),
      (err) => {
        console.error(err);
        process.exit(1);
      },
    );
    return;
  }
  try {
    require.resolve(dist);
  } catch {
    console.error(`${dist} is missing: run \`npx tsc -b\` first`);
    process.exit(1);
  }
  if (process.argv[2] === 'ab') return ab(process.argv.slice(3));
  const args = process.argv.slice(2);
  const kinds = args.filter((a) => KINDS.includes(a));
  const counts = args.filter((a) => !KINDS.includes(a)).map(Number);
  if (kinds.length === 0) kinds.push(...KINDS);
  if (counts.length === 0) counts.push(100, 1000, 5000);
  console.log(`node ${process.version}; peak RSS and heap sampled every ${SAMPLE_MS} ms; one process per case\n`);
  console.log('kind            permits   seconds  permits/s  ms/permit  CPU ms/permit  KB/permit   output MB  start RSS MB  peak RSS MB  peak heap MB  start live MB  peak live MB');
  const all = [];
  for (const kind of kinds) {
    const rows = counts.map((count) => JSON.parse(execFileSync(process.execPath, ['--expose-gc', __filename, '--case', kind, String(count)], { encoding: 'utf8' })));
    all.push(...rows);
    for (const r of rows) {
      console.log(
        `${r.kind.padEnd(14)} ${String(r.count).padStart(8)} ${r.seconds.toFixed(2).padStart(9)} ${(r.count / r.seconds).toFixed(0).padStart(10)}` +
          ` ${((r.seconds * 1000) / r.count).toFixed(1).padStart(10)} ${((r.cpuSeconds * 1000) / r.count).toFixed(1).padStart(14)}` +
          ` ${(r.bytes / r.count / 1024).toFixed(1).padStart(10)}` +
          ` ${mb(r.bytes).padStart(11)} ${mb(r.baseRss).padStart(13)} ${mb(r.peakRss).padStart(12)} ${mb(r.peakHeap).padStart(13)}` +
          ` ${mb(r.baseLive).padStart(14)} ${mb(r.peakLive).padStart(13)}`,
      );
    }
    const first = rows[0];
    const last = rows[rows.length - 1];
    console.log(
      `${''.padEnd(14)} ${last.count} vs ${first.count} permits (${(last.count / first.count).toFixed(0)}x): ` +
        `peak RSS ${(last.peakRss / first.peakRss).toFixed(2)}x, peak live ${(last.peakLive / first.peakLive).toFixed(2)}x ` +
        `(+${mb(last.peakLive - first.peakLive)} MB); output ${(last.bytes / first.bytes).toFixed(0)}x\n`,
    );
  }
  // The cost of the fonts: time and bytes per PDF against Helvetica at the same count.
  for (const r of all.filter((x) => x.kind === 'pdf' || x.kind === 'pdf-mixed')) {
    const base = all.find((x) => x.kind === 'pdf-helvetica' && x.count === r.count);
    if (!base) continue;
    console.log(
      `${r.kind} vs pdf-helvetica, ${r.count} permits: time per PDF ${(r.seconds / base.seconds).toFixed(2)}x, ` +
        `CPU per PDF ${(r.cpuSeconds / base.cpuSeconds).toFixed(2)}x (${(((r.cpuSeconds - base.cpuSeconds) * 1000) / r.count).toFixed(1)} ms more), ` +
        `bytes per PDF ${(r.bytes / base.bytes).toFixed(2)}x ` +
        `(+${((r.bytes - base.bytes) / r.count / 1024).toFixed(1)} KB)`,
    );
  }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Alternating A/B rounds of this checkout against BENCH_B_ROOT's (see the header). */
function ab(args) {
  const roots = { A: root, B: path.resolve(process.env.BENCH_B_ROOT || root) };
  for (const r of Object.values(roots)) require.resolve(distOf(r));
  const rounds = /^\d+$/.test(args[0] ?? '') ? Number(args.shift()) : 6;
  const isPair = (a) => a.split('/').every((k) => KINDS.includes(k));
  const pairs = args.filter(isPair).map((a) => (a.includes('/') ? a.split('/') : [a, a]));
  const counts = args.filter((a) => !isPair(a)).map(Number);
  if (pairs.length === 0) pairs.push(['pdf', 'pdf-stock'], ['pdf-mixed', 'pdf-mixed-stock']);
  if (counts.length === 0) counts.push(100);
  if (roots.A === roots.B && pairs.some(([a, b]) => a === b)) throw new Error('ab: a bare kind compares two checkouts: set BENCH_B_ROOT, or give A-kind/B-kind');
  console.log(`node ${process.version}; A: ${roots.A}, B: ${roots.B}; ${rounds} rounds, the order flipped every round; one process per case\n`);
  console.log('A-kind/B-kind           permits  round  A ms/permit  B ms/permit  B/A time  A CPU ms/permit  B CPU ms/permit  B/A CPU  A KB/permit  B KB/permit');
  for (const [kindA, kindB] of pairs) {
    const kind = `${kindA}/${kindB}`;
    const kinds = { A: kindA, B: kindB };
    for (const count of counts) {
      const runs = { A: [], B: [] };
      for (let i = 0; i < rounds; i++) {
        for (const k of i % 2 ? ['B', 'A'] : ['A', 'B']) {
          runs[k].push(JSON.parse(execFileSync(process.execPath, ['--expose-gc', __filename, '--case', kinds[k], String(count), roots[k]], { encoding: 'utf8' })));
        }
        const [a, b] = [runs.A[i], runs.B[i]];
        console.log(
          `${kind.padEnd(22)} ${String(count).padStart(8)} ${String(i + 1).padStart(6)} ${((a.seconds * 1000) / count).toFixed(1).padStart(12)} ${((b.seconds * 1000) / count).toFixed(1).padStart(12)}` +
            ` ${(b.seconds / a.seconds).toFixed(2).padStart(9)} ${((a.cpuSeconds * 1000) / count).toFixed(1).padStart(16)} ${((b.cpuSeconds * 1000) / count).toFixed(1).padStart(16)}` +
            ` ${(b.cpuSeconds / a.cpuSeconds).toFixed(2).padStart(8)} ${(a.bytes / count / 1024).toFixed(1).padStart(12)} ${(b.bytes / count / 1024).toFixed(1).padStart(12)}`,
        );
      }
      const time = median(runs.A.map((a, i) => runs.B[i].seconds / a.seconds));
      const cpu = median(runs.A.map((a, i) => runs.B[i].cpuSeconds / a.cpuSeconds));
      console.log(
        `${kind}, ${count} permits, medians: A ${median(runs.A.map((r) => (r.seconds * 1000) / count)).toFixed(1)} ms/permit, B ${median(runs.B.map((r) => (r.seconds * 1000) / count)).toFixed(1)} ms/permit;` +
          ` B/A time ${time.toFixed(2)}x, B/A CPU ${cpu.toFixed(2)}x (per-round ratios ${runs.A.map((a, i) => (runs.B[i].seconds / a.seconds).toFixed(2)).join(' ')})\n`,
      );
    }
  }
}

main();
