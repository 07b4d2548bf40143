import { once } from 'node:events';
import { Transform, type TransformCallback, type Writable } from 'node:stream';

/**
 * Buffer size of the ZIP writers. archiver's default (1 MiB on each side of its stream) lets a
 * stalled reader hold about 2 MiB of compressed output, and hundreds of permits with it, before
 * the producer notices; this keeps what waits for a slow reader small.
 */
export const ZIP_BUFFER_BYTES = 64 * 1024;

/** Pass-through that counts the bytes it forwards. */
export class ByteCounter extends Transform {
  bytes = 0;

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    cb(null, chunk);
  }
}

/**
 * The failure state of one export run. Every wait of the producer is raced against it, so an abort,
 * a broken output or a render error ends the run at once instead of leaving it waiting for an event
 * that a destroyed stream will never emit.
 */
export class RunGuard {
  /**
   * Rejecters of the waits in progress. Not `Promise.race` with one long-lived "failed" promise:
   * every race would leave a reaction on it until the run ends, a few KiB per permit.
   */
  private readonly waiting = new Set<(err: unknown) => void>();
  private error: unknown;
  private isFailed = false;

  constructor(signal?: AbortSignal) {
    if (signal?.aborted) this.fail(abortError(signal));
    else signal?.addEventListener('abort', () => this.fail(abortError(signal)), { once: true });
  }

  /** The first failure wins; later ones are consequences of it. */
  fail(err: unknown): void {
    if (this.isFailed) return;
    this.isFailed = true;
    this.error = err;
    for (const reject of this.waiting) reject(err);
    this.waiting.clear();
  }

  /** Settles like `p`, or rejects with the run's failure as soon as there is one. */
  race<T>(p: Promise<T>): Promise<T> {
    if (this.isFailed) return Promise.reject(this.error);
    return new Promise<T>((resolve, reject) => {
      this.waiting.add(reject);
      p.then(resolve, reject).finally(() => this.waiting.delete(reject));
    });
  }

  /** Iterates `source`, stopping (and closing the source) as soon as the run fails. */
  async *iterate<T>(source: AsyncIterable<T>): AsyncGenerator<T> {
    const it = source[Symbol.asyncIterator]();
    let exhausted = false;
    try {
      for (;;) {
        if (this.isFailed) throw this.error;
        const r = await this.race(it.next());
        if (r.done) {
          exhausted = true;
          return;
        }
        yield r.value;
      }
    } finally {
      // Not awaited: a source stuck in next() would block return() behind it.
      if (!exhausted) Promise.resolve(it.return?.()).catch(() => undefined);
    }
  }

  /**
   * Lets queued stream work (zlib runs on the thread pool) progress and waits while `sink` is over
   * its high-water mark: a producer that only awaits microtasks would otherwise starve the
   * compressor and buffer the whole export.
   */
  async yieldTo(sink: Writable): Promise<void> {
    await this.race(new Promise<void>((resolve) => setImmediate(resolve)));
    if (sink.writableNeedDrain) await this.race(once(sink, 'drain').then(() => undefined));
  }
}

/** `err` as an Error, for stream.destroy(); an AbortSignal's DOMException is kept as it is. */
export function toError(err: unknown): Error {
  // Duck-typed: errors of another realm (vm contexts, jest) are not `instanceof Error` here.
  if (typeof err === 'object' && err !== null && 'name' in err && 'message' in err) return err as Error;
  return new Error(String(err));
}

function abortError(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}
