import { ConfigError } from '@ptw/common';
import { loadJobsConfig, parseSchedule, schedulesOf } from './config';

describe('parseSchedule', () => {
  it.each([
    ['2 seconds', 2000, '*/2 * * * * *'],
    ['15 minutes', 900_000, '0 */15 * * * *'],
    ['5 minutes', 300_000, '0 */5 * * * *'],
    ['60 seconds', 60_000, '0 */1 * * * *'],
    ['6 hours', 21_600_000, '0 0 */6 * * *'],
    ['1 day', 86_400_000, '0 0 0 * * *'],
  ])('when the interval is "%s", then it ticks every %d ms on the cron %s', (text, ms, cron) => {
    expect(parseSchedule(text)).toEqual({ text, ms, cron });
  });

  it.each(['90 seconds', '7 minutes', '5 hours', '2 days', 'often', '0 seconds'])('when the interval is "%s", then it is refused (its ticks would not line up across workers)', (text) => {
    expect(() => parseSchedule(text)).toThrow();
  });
});

describe('loadJobsConfig', () => {
  it('when nothing is set, then the schedules, backoff and alert defaults of the spec apply', () => {
    const c = loadJobsConfig({});
    expect(Object.fromEntries(Object.entries(schedulesOf(c)).map(([k, s]) => [k, s.text]))).toEqual({
      check_expiring_permits: '15 minutes',
      check_overdue_workflow_tasks: '15 minutes',
      auto_expire_permits: '5 minutes',
    });
    expect([c.PTW_JOB_RETRY_BASE_MS, c.PTW_JOB_RETRY_CAP_MS, c.PTW_ALERT_OVERDUE_THRESHOLD, c.PTW_ALERT_WEBHOOK_URL, c.PTW_JOBS_WORKER]).toEqual([1000, 60_000, 10, undefined, true]);
    expect(loadJobsConfig({ PTW_JOBS_WORKER: 'false' }).PTW_JOBS_WORKER).toBe(false);
  });

  it('when values are wrong, then every variable at fault is named at once', () => {
    try {
      loadJobsConfig({ PTW_JOB_AUTO_EXPIRE_EVERY: '7 minutes', PTW_JOB_RETRY_BASE_MS: 'fast', PTW_ALERT_WEBHOOK_URL: 'ftp://host/x' });
      throw new Error('expected a ConfigError');
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      const problems = (err as ConfigError).problems.join('\n');
      expect(problems).toMatch(/PTW_JOB_AUTO_EXPIRE_EVERY: "7 minutes" must divide/);
      expect(problems).toMatch(/PTW_JOB_RETRY_BASE_MS/);
      expect(problems).toMatch(/PTW_ALERT_WEBHOOK_URL/);
    }
  });
});
