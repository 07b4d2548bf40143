import ExcelJS from 'exceljs';
import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { AUDIT_HEADERS, CLOSEOUT_HEADERS, ISOLATION_HEADERS, PERMIT_HEADERS, streamExcel } from './excel';
import { samplePermit } from './samples';
import { Collect, endlessSamples, from, settled, Stalled } from './stream-testing';
import type { ExportPermit } from './types';

const spoolDirs = () => readdirSync(tmpdir()).filter((f) => f.startsWith('ptw-export-'));

function permits(): ExportPermit[] {
  const rich = samplePermit(1, { isolationPoints: 2, auditRows: 3 });
  const noItems: ExportPermit = {
    ...samplePermit(2, { isolationPoints: 1, auditRows: 1 }),
    closeout: { checklist: {}, remarks: 'Nothing to check', completed: true, completed_at: new Date(Date.UTC(2025, 2, 2)), completed_by: 'u-manager' },
  };
  const bare: ExportPermit = {
    ...samplePermit(3),
    title: 'Bare \u0007permit',
    project_name: undefined,
    verifier_id: undefined,
    approver_id: undefined,
    submitted_at: undefined,
    isolation_points: [],
    closeout: null,
    audit: [],
  };
  return [rich, noItems, bare];
}

async function exportBook(detailed: boolean): Promise<{ wb: ExcelJS.Workbook; result: { permitCount: number; bytes: number }; size: number }> {
  const out = new Collect();
  const result = await streamExcel(from(permits()), out, { detailed });
  const wb = new ExcelJS.Workbook();
  await wb.xlsx.load(out.buffer as unknown as ArrayBuffer);
  return { wb, result, size: out.buffer.length };
}

function rows(ws: ExcelJS.Worksheet): unknown[][] {
  const out: unknown[][] = [];
  ws.eachRow((row) => out.push((row.values as unknown[]).slice(1)));
  return out;
}

describe('streamExcel', () => {
  it('when not detailed, then the workbook has only the Permits sheet, its headers and one row per permit', async () => {
    const { wb, result, size } = await exportBook(false);
    expect(wb.worksheets.map((w) => w.name)).toEqual(['Permits']);
    const [header, ...data] = rows(wb.getWorksheet('Permits')!);
    expect(header).toEqual([...PERMIT_HEADERS]);
    expect(data.map((r) => r[0])).toEqual(['PTW-2025-000001', 'PTW-2025-000002', 'PTW-2025-000003']);
    expect(result).toEqual({ permitCount: 3, bytes: size });
  });

  it('when a permit row is read back, then every column holds the permit field, dates in ISO 8601 UTC', async () => {
    const { wb } = await exportBook(false);
    const first = rows(wb.getWorksheet('Permits')!)[1];
    expect(Object.fromEntries(PERMIT_HEADERS.map((h, i) => [h, first[i]]))).toEqual({
      'Permit Number': 'PTW-2025-000001',
      Title: 'Pump seal replacement 1',
      Type: 'Hot work',
      Status: 'active',
      Priority: 'high',
      'Risk Level': 'high',
      'Risk Score': 12,
      Location: 'Boiler house, level 2',
      Project: 'North plant',
      'Planned Start': '2025-03-01T09:00:00Z',
      'Planned End': '2025-03-01T17:00:00Z',
      'Actual Start': '2025-03-01T09:30:00Z',
      'Actual End': undefined,
      'Created By': 'Wanda Worker (u-worker)',
      Verifier: 'Sam Supervisor (u-super)',
      Approver: 'Mia Manager (u-manager)',
      'Submitted At': '2025-03-01T08:12:00Z',
      'Verified At': '2025-03-01T08:30:00Z',
      'Approved At': '2025-03-01T08:48:00Z',
      'Created At': '2025-03-01T08:00:00Z',
      'Updated At': '2025-03-01T09:30:00Z',
    });
  });

  it('when fields are missing or text holds control characters, then cells are empty or cleaned and the file still opens', async () => {
    const { wb } = await exportBook(false);
    const bare = rows(wb.getWorksheet('Permits')!)[3];
    expect(bare[1]).toBe('Bare permit');
    expect(bare[PERMIT_HEADERS.indexOf('Project')]).toBe('p1');
    expect(bare[PERMIT_HEADERS.indexOf('Verifier')]).toBeUndefined();
    expect(bare[PERMIT_HEADERS.indexOf('Submitted At')]).toBeUndefined();
  });

  it('when detailed, then the Isolation Points, Closeout and Audit sheets hold one row per point, item and event', async () => {
    const { wb } = await exportBook(true);
    expect(wb.worksheets.map((w) => w.name)).toEqual(['Permits', 'Isolation Points', 'Closeout', 'Audit']);

    const [isoHeader, ...iso] = rows(wb.getWorksheet('Isolation Points')!);
    expect(isoHeader).toEqual([...ISOLATION_HEADERS]);
    expect(iso.map((r) => [r[0], r[1], r[3], r[5], r[7]])).toEqual([
      ['PTW-2025-000001', 'Isolator A0', true, 'L-1-0', '2025-03-01T08:36:00Z'],
      ['PTW-2025-000001', 'Isolator B1', false, 'L-1-1', '2025-03-01T08:36:00Z'],
      ['PTW-2025-000002', 'Isolator A0', false, 'L-2-0', '2025-03-01T08:36:00Z'],
    ]);

    const [coHeader, ...co] = rows(wb.getWorksheet('Closeout')!);
    expect(coHeader).toEqual([...CLOSEOUT_HEADERS]);
    expect(co.map((r) => [r[0], r[1], r[2], r[3], r[4], r[8], r[11]])).toEqual([
      ['PTW-2025-000001', 'area_clean', 'Work area cleaned', true, true, false, 'Waiting for the fire watch to end.'],
      ['PTW-2025-000001', 'tools_removed', 'Tools and materials removed', true, false, false, 'Waiting for the fire watch to end.'],
      ['PTW-2025-000001', 'locks_removed', 'Personal locks removed', false, false, false, 'Waiting for the fire watch to end.'],
      // A closeout without items still reports its completion; a permit without closeout has no row.
      ['PTW-2025-000002', undefined, undefined, undefined, undefined, true, 'Nothing to check'],
    ]);
    expect(co[0][6]).toBe('Wanda Worker (u-worker)');
    expect(co[3][9]).toBe('Mia Manager (u-manager)');
    expect(co[3][10]).toBe('2025-03-02T00:00:00Z');

    const [auHeader, ...au] = rows(wb.getWorksheet('Audit')!);
    expect(auHeader).toEqual([...AUDIT_HEADERS]);
    expect(au).toHaveLength(4);
    expect(au[1]).toEqual(['PTW-2025-000001', 'transition', 'draft', 'submitted', 'Wanda Worker (u-worker)', '2025-03-01T08:06:00Z', 'Ready for verification']);
  });

  it('when a detailed export ends, then its temporary spool files are gone', async () => {
    const before = spoolDirs().length;
    await exportBook(true);
    expect(spoolDirs()).toHaveLength(before);
  });

  it('when many permits are exported in detail, then every row arrives in order', async () => {
    const out = new Collect();
    const many = Array.from({ length: 600 }, (_, i) => samplePermit(i + 1, { isolationPoints: 2, auditRows: 2 }));
    await expect(streamExcel(from(many), out, { detailed: true })).resolves.toMatchObject({ permitCount: 600 });
    const wb = new ExcelJS.Workbook();
    await wb.xlsx.load(out.buffer as unknown as ArrayBuffer);
    expect(wb.getWorksheet('Permits')!.actualRowCount).toBe(601);
    const iso = rows(wb.getWorksheet('Isolation Points')!);
    expect(iso).toHaveLength(1201);
    expect(iso[1200][0]).toBe('PTW-2025-000600');
    expect(wb.getWorksheet('Audit')!.actualRowCount).toBe(1201);
  });
});

describe('streamExcel flow control', () => {
  it('when the output stops accepting bytes, then the source is not drained, and an abort ends the run and removes the spool', async () => {
    const before = spoolDirs().length;
    const source = endlessSamples();
    const ac = new AbortController();
    const out = new Stalled();
    const run = streamExcel(source.items, out, { detailed: true, signal: ac.signal });
    run.catch(() => undefined);
    try {
      const stalledAt = await settled(source.pulled);
      // The rows waiting for the reader are bounded by the stream buffers: about 330 permits here.
      expect(stalledAt).toBeGreaterThan(0);
      expect(stalledAt).toBeLessThan(2000);
    } finally {
      ac.abort();
    }
    await expect(run).rejects.toMatchObject({ name: 'AbortError' });
    expect(out.destroyed).toBe(true);
    expect(spoolDirs()).toHaveLength(before);
  }, 20_000);

  it('when the signal aborts while the source is stuck, then the run rejects at once', async () => {
    const ac = new AbortController();
    async function* stuck() {
      yield samplePermit(1);
      ac.abort();
      await new Promise(() => undefined);
    }
    const out = new Collect();
    await expect(streamExcel(stuck(), out, { detailed: false, signal: ac.signal })).rejects.toMatchObject({ name: 'AbortError' });
    expect(out.destroyed).toBe(true);
  });

  it('when the source fails, then the run rejects with its error and the output is not ended', async () => {
    async function* failing() {
      yield samplePermit(1);
      throw new Error('cursor lost');
    }
    const out = new Collect();
    let ended = false;
    out.on('finish', () => (ended = true));
    await expect(streamExcel(failing(), out, { detailed: true })).rejects.toThrow('cursor lost');
    expect(out.destroyed).toBe(true);
    expect(ended).toBe(false);
  });
});
