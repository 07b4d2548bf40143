/**
 * Retries with exponential backoff and FULL jitter (Celery's `retry_jitter`): the n-th retry waits
 * a random whole number of milliseconds in [0, min(cap, base·2^(n-1))]. Agenda 6's own `backoff`
 * option jitters symmetrically around the exponential value and reschedules the job document,
 * which would give a retried run a new scheduled time (and so a new slot); retrying inside one
 * Agenda run keeps every attempt of a slot under that slot, recorded as attempts 1..4.
 */
export interface RetryPolicy {
  /** Retries after the first attempt (SPEC §8: 3, i.e. 4 attempts in all). */
  maxRetries: number;
  baseMs: number;
  capMs: number;
  /** Uniform random number in [0, 1) (injected in tests). */
  random: () => number;
  /** Waits `ms`; rejects when `signal` aborts (shutdown). */
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
}

export const MAX_RETRIES = 3;

/** Upper bound of the delay before retry `retry` (1-based). */
export function backoffBound(retry: number, baseMs: number, capMs: number): number {
  return Math.min(capMs, baseMs * 2 ** (retry - 1));
}

/** The delay before retry `retry` (1-based): a random integer in [0, backoffBound(retry)]. */
export function fullJitterDelay(retry: number, policy: Pick<RetryPolicy, 'baseMs' | 'capMs' | 'random'>): number {
  const bound = backoffBound(retry, policy.baseMs, policy.capMs);
  const r = Math.min(Math.max(policy.random(), 0), 1 - Number.EPSILON);
  return Math.floor(r * (bound + 1));
}

/** setTimeout as a promise that an AbortSignal cuts short. */
export function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason ?? new Error('aborted'));
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason ?? new Error('aborted'));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** The policy of SPEC §8 with the configured base and cap. */
export function defaultRetryPolicy(baseMs: number, capMs: number, overrides: Partial<RetryPolicy> = {}): RetryPolicy {
  return { maxRetries: MAX_RETRIES, baseMs, capMs, random: Math.random, sleep: abortableSleep, ...overrides };
}

/**
 * Runs `fn` until it succeeds or `policy.maxRetries` retries failed, waiting the full-jitter delay
 * between attempts; `onError` sees each failure and the delay before the next attempt (undefined
 * after the last one). Resolves with the result, rejects with the last error.
 */
export async function retryWithBackoff<T>(
  fn: (attempt: number) => Promise<T>,
  policy: RetryPolicy,
  opts: { signal?: AbortSignal; onError?: (err: unknown, attempt: number, delayMs: number | undefined) => void } = {},
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      const last = attempt > policy.maxRetries;
      const delay = last ? undefined : fullJitterDelay(attempt, policy);
      opts.onError?.(err, attempt, delay);
      if (delay === undefined) throw err;
      await policy.sleep(delay, opts.signal);
    }
  }
}
