import { ConfigError, loadConfig } from '@ptw/common';
import { gatewayConfigSchema } from '../config';
import { parseRate, scopeSettings, throttleConfigSchema } from './config';

const secret = { PTW_JWT_SECRET: 'a-secret-of-enough-length' };

function problems(env: Record<string, string>): string {
  try {
    loadConfig(gatewayConfigSchema, { ...secret, ...env });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems.join('\n');
  }
  throw new Error('expected a ConfigError');
}

describe('parseRate', () => {
  it.each([
    ['60/min', 60, 60],
    ['5/hour', 5, 3600],
    ['1/sec', 1, 1],
    ['1000/day', 1000, 86_400],
    [' 120/min ', 120, 60],
  ])('when the rate is %p, then it allows %p requests per %p seconds', (text, limit, windowSeconds) => {
    expect(parseRate(text)).toEqual({ limit, windowSeconds });
  });

  it.each(['0/min', '-1/min', '1.5/min', '60/minute', '60/m', '60', '/min', 'min/60', '60/min/x', '60 / min', '', '10000000/sec'])('when the rate is %p, then it is refused', (text) => {
    expect(parseRate(text)).toBeUndefined();
  });
});

describe('throttle configuration', () => {
  it('when nothing is set, then the SPEC §4 rates apply and every scope fails open', () => {
    const s = scopeSettings(loadConfig(gatewayConfigSchema, secret));
    expect(s).toEqual({
      ptw_sync: { scope: 'ptw_sync', limit: 60, windowSeconds: 60, failMode: 'open' },
      ptw_bulk_export: { scope: 'ptw_bulk_export', limit: 5, windowSeconds: 3600, failMode: 'open' },
      ptw_kpi: { scope: 'ptw_kpi', limit: 120, windowSeconds: 60, failMode: 'open' },
      ptw_notifications: { scope: 'ptw_notifications', limit: 120, windowSeconds: 60, failMode: 'open' },
    });
    expect(loadConfig(gatewayConfigSchema, secret).PTW_THROTTLE_REDIS_TIMEOUT_MS).toBe(1000);
  });

  it('when each variable is set, then its scope uses it', () => {
    const c = loadConfig(gatewayConfigSchema, {
      ...secret,
      PTW_THROTTLE_SYNC: '10/sec',
      PTW_THROTTLE_BULK_EXPORT: '2/day',
      PTW_THROTTLE_KPI: '7/hour',
      PTW_THROTTLE_NOTIFICATIONS: '3/min',
      PTW_THROTTLE_SYNC_FAIL: 'closed',
      PTW_THROTTLE_NOTIFICATIONS_FAIL: 'closed',
    });
    const s = scopeSettings(c);
    expect([s.ptw_sync.limit, s.ptw_sync.windowSeconds, s.ptw_sync.failMode]).toEqual([10, 1, 'closed']);
    expect([s.ptw_bulk_export.limit, s.ptw_bulk_export.windowSeconds, s.ptw_bulk_export.failMode]).toEqual([2, 86_400, 'open']);
    expect([s.ptw_kpi.limit, s.ptw_kpi.windowSeconds, s.ptw_kpi.failMode]).toEqual([7, 3600, 'open']);
    expect([s.ptw_notifications.limit, s.ptw_notifications.windowSeconds, s.ptw_notifications.failMode]).toEqual([3, 60, 'closed']);
  });

  it('when a rate is invalid, then start-up fails naming the variable and the expected form', () => {
    const text = problems({ PTW_THROTTLE_BULK_EXPORT: '5/week' });
    expect(text).toMatch(/^PTW_THROTTLE_BULK_EXPORT: expected <count>\/<sec\|min\|hour\|day>/);
    expect(text).toMatch(/got "5\/week"/);
  });

  it('when a failure mode is neither open nor closed, then start-up fails naming the variable', () => {
    expect(problems({ PTW_THROTTLE_KPI_FAIL: 'sometimes' })).toMatch(/^PTW_THROTTLE_KPI_FAIL: /);
  });

  it('when several throttle variables are wrong, then every one is reported at once', () => {
    const text = problems({ PTW_THROTTLE_SYNC: '0/min', PTW_THROTTLE_KPI: 'lots', PTW_THROTTLE_NOTIFICATIONS_FAIL: 'OPEN', PTW_THROTTLE_REDIS_TIMEOUT_MS: '0' });
    for (const name of ['PTW_THROTTLE_SYNC', 'PTW_THROTTLE_KPI', 'PTW_THROTTLE_NOTIFICATIONS_FAIL', 'PTW_THROTTLE_REDIS_TIMEOUT_MS']) {
      expect(text).toMatch(new RegExp(`^${name}: `, 'm'));
    }
    expect(text).not.toMatch(/PTW_THROTTLE_BULK_EXPORT/);
  });

  it('when no key prefix is set, then keys start with ptw:throttle; a given one is kept; a malformed one stops start-up naming the variable', () => {
    expect(loadConfig(gatewayConfigSchema, secret).PTW_THROTTLE_KEY_PREFIX).toBe('ptw:throttle');
    expect(loadConfig(gatewayConfigSchema, { ...secret, PTW_THROTTLE_KEY_PREFIX: 'site-7:staging.throttle' }).PTW_THROTTLE_KEY_PREFIX).toBe('site-7:staging.throttle');
    // An empty variable counts as unset, as for every variable (loadConfig).
    expect(loadConfig(gatewayConfigSchema, { ...secret, PTW_THROTTLE_KEY_PREFIX: '' }).PTW_THROTTLE_KEY_PREFIX).toBe('ptw:throttle');
    for (const bad of ['has space', 'a*', 'x'.repeat(65), 'ptw:{throttle}']) {
      expect(problems({ PTW_THROTTLE_KEY_PREFIX: bad })).toMatch(/^PTW_THROTTLE_KEY_PREFIX: expected 1-64 letters, digits or _.:-/);
    }
  });

  it('when the throttle schema is used alone, then it parses the same variables', () => {
    expect(loadConfig(throttleConfigSchema, { PTW_THROTTLE_SYNC: '2/min' }).PTW_THROTTLE_SYNC).toEqual({ limit: 2, windowSeconds: 60 });
  });
});
