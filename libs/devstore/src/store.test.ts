/** The local store's own folder: made per store, removed with it unless the caller gave one. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startStore } from './index';

jest.setTimeout(60_000);

describe('startStore', () => {
  it('when it made its data folder, then stop() removes it; a given folder is kept', async () => {
    const own = await startStore();
    expect(fs.existsSync(own.dataDir)).toBe(true);
    await own.stop();
    expect(fs.existsSync(own.dataDir)).toBe(false);

    const given = fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-store-given-'));
    const marker = path.join(given, 'keep-me');
    fs.writeFileSync(marker, 'x');
    try {
      const kept = await startStore({ dataDir: given });
      expect(kept.dataDir).toBe(given);
      await kept.stop();
      expect(fs.existsSync(marker)).toBe(true);
    } finally {
      fs.rmSync(given, { recursive: true, force: true });
    }
  });
});
