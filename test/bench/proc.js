/**
 * What several benches read of the processes they measure, how they summarise it, and the throttle
 * windows they leave behind.
 */
const fs = require('node:fs');
const { execFileSync } = require('node:child_process');

let clockTicks;
/**
 * CPU seconds (user + system, every thread) a process has used, from /proc (Linux); NaN elsewhere or
 * once it is gone. Per response, it is the process's own cost, which other load on a shared machine
 * disturbs much less than req/s.
 */
function cpuSeconds(pid) {
  try {
    clockTicks ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' })) || 100;
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / clockTicks;
  } catch {
    return NaN;
  }
}

/**
 * Deletes a bench user's sync window from the gateway's throttle (default key prefix): one sorted-set
 * entry per request, which would otherwise stay in the developer's Redis for the window's hour.
 */
async function forgetSyncWindow(redisUrl, user) {
  const Redis = require('ioredis');
  const redis = new Redis(redisUrl);
  try {
    await redis.del(`ptw:throttle:ptw_sync:user:${user}`);
  } finally {
    await redis.quit();
  }
}

/** The median of `values` (the lower middle one of an even count: always a measured figure). */
function median(values) {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

module.exports = { cpuSeconds, forgetSyncWindow, median };
