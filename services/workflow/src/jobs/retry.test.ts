import fc from 'fast-check';
import { backoffBound, fullJitterDelay, retryWithBackoff, type RetryPolicy } from './retry';
import { manualSlot, scheduledSlot } from './runner';

describe('full-jitter backoff', () => {
  it('when retries follow each other, then the bounds double from the base up to the cap', () => {
    expect([1, 2, 3, 4, 5, 6, 7].map((n) => backoffBound(n, 1000, 60_000))).toEqual([1000, 2000, 4000, 8000, 16_000, 32_000, 60_000]);
  });

  it('when the random source takes any value, then the delay is a whole number in [0, min(cap, base·2^(n-1))]', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 0, max: 10_000 }),
        fc.integer({ min: 0, max: 120_000 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (retry, baseMs, capMs, r) => {
          const d = fullJitterDelay(retry, { baseMs, capMs, random: () => r });
          return Number.isInteger(d) && d >= 0 && d <= Math.min(capMs, baseMs * 2 ** (retry - 1));
        },
      ),
    );
  });

  it('when the random source is at its extremes, then the delay spans the whole range (full, not equal, jitter)', () => {
    const p = { baseMs: 1000, capMs: 60_000 };
    expect(fullJitterDelay(3, { ...p, random: () => 0 })).toBe(0);
    expect(fullJitterDelay(3, { ...p, random: () => 0.999_999_9 })).toBe(4000);
  });

  it('when a call fails twice, then it is tried three times with the delays drawn between them', async () => {
    const delays: number[] = [];
    const policy: RetryPolicy = { maxRetries: 3, baseMs: 100, capMs: 1000, random: () => 0.5, sleep: async (ms) => void delays.push(ms) };
    let calls = 0;
    const out = await retryWithBackoff(async () => {
      if (++calls < 3) throw new Error('boom');
      return 'ok';
    }, policy);
    expect([out, calls, delays]).toEqual(['ok', 3, [50, 100]]);
  });

  it('when a call always fails, then it gives up after 4 attempts with the last error', async () => {
    const policy: RetryPolicy = { maxRetries: 3, baseMs: 1, capMs: 1, random: () => 0, sleep: async () => undefined };
    let calls = 0;
    await expect(
      retryWithBackoff(async () => {
        calls++;
        throw new Error(`fail ${calls}`);
      }, policy),
    ).rejects.toThrow('fail 4');
    expect(calls).toBe(4);
  });
});

describe('slots', () => {
  it('when workers start the same tick a little early or late, then they compute the same slot', () => {
    const tick = Date.parse('2030-01-15T10:15:00.000Z');
    const period = 15 * 60_000;
    const slots = [-900, -1, 0, 35, 14 * 60_000].map((d) => scheduledSlot(new Date(tick + d), period));
    expect(new Set(slots)).toEqual(new Set(['2030-01-15T10:15:00.000Z']));
    expect(scheduledSlot(new Date(tick - 2000), period)).toBe('2030-01-15T10:00:00.000Z');
  });

  it('when two manual runs start in the same millisecond, then their slots differ', () => {
    const at = new Date();
    expect(manualSlot(at)).not.toBe(manualSlot(at));
    expect(manualSlot(at)).toMatch(/^manual:\d{4}-\d\d-\d\dT.*Z:[0-9a-f]{8}$/);
  });
});
