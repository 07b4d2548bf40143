/** The pure helpers of each.ts: bounded concurrency and a bounded wait. */
import { mapLimit, waitAtMost } from './each';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

it('when 10 items run with a concurrency of 3, then at most 3 are in flight and results keep the input order', async () => {
  let inFlight = 0;
  let most = 0;
  const out = await mapLimit([...Array(10).keys()], 3, async (n) => {
    most = Math.max(most, ++inFlight);
    await sleep(5 + (n % 3) * 5);
    inFlight--;
    return n * 2;
  });
  expect(most).toBe(3);
  expect(out).toEqual([...Array(10).keys()].map((n) => n * 2));
});

it('when the work takes longer than the wait, then the wait ends first and a later failure is dropped', async () => {
  let settled = false;
  const work = sleep(300).then(() => {
    settled = true;
    throw new Error('late failure');
  });
  await waitAtMost(work, 20);
  expect(settled).toBe(false);
  await sleep(350);
  expect(settled).toBe(true);
});

it('when the work fails within the wait, then the wait rejects with its error', async () => {
  await expect(waitAtMost(Promise.reject(new Error('early failure')), 1000)).rejects.toThrow('early failure');
});

it('when the work ends within the wait, then the wait ends with it', async () => {
  const t0 = Date.now();
  await waitAtMost(sleep(10), 5000);
  expect(Date.now() - t0).toBeLessThan(4000);
});
