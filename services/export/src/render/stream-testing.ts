/** Stream doubles shared by the renderer tests (not used by the service itself). */
import { Writable } from 'node:stream';
import { samplePermit } from './samples';

/** Keeps everything written to it. */
export class Collect extends Writable {
  chunks: Buffer[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.chunks.push(chunk);
    cb();
  }
  get buffer(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

/** Accepts one chunk and then never acknowledges it: an output whose reader went away. */
export class Stalled extends Writable {
  constructor() {
    super({ highWaterMark: 1 });
  }
  override _write(): void {}
}

/** The value of `read()` once it has stopped changing for 400 ms (polled for at most 10 s). */
export async function settled(read: () => number): Promise<number> {
  let last = -1;
  let still = 0;
  for (let t = 0; t < 100 && still < 4; t++) {
    await new Promise((r) => setTimeout(r, 100));
    still = read() === last ? still + 1 : 0;
    last = read();
  }
  if (still < 4) throw new Error(`still changing after 10 s: ${last}`);
  return last;
}

/** An async iterable over `items` (what the renderers consume). */
// eslint-disable-next-line @typescript-eslint/require-await -- an async generator is what makes it an async iterable
export async function* from<T>(items: Iterable<T>): AsyncGenerator<T> {
  for (const it of items) yield it;
}

/** An endless source of sample permits that, like a cursor, waits on I/O between items; counts pulls. */
export function endlessSamples(): { items: AsyncGenerator<ReturnType<typeof samplePermit>>; pulled: () => number } {
  let pulled = 0;
  async function* items() {
    for (let i = 1; ; i++) {
      await new Promise((r) => setImmediate(r));
      pulled += 1;
      yield samplePermit(i);
    }
  }
  return { items: items(), pulled: () => pulled };
}
