// PTW admin console. Every figure comes from the gateway's HTTP API with the pasted token; every
// value from the API reaches the page as text (textContent / text nodes), never as markup.
'use strict';

(() => {
  const API = '/api/v1/ptw';
  const TOKEN_KEY = 'ptw_admin_token';
  const REFRESH_MS = 15_000;
  const SVG_NS = 'http://www.w3.org/2000/svg';

  const $ = (id) => document.getElementById(id);
  let timer;
  // Bumped on sign-out, so an answer to an older token's request is dropped.
  let session = 0;
  let throttleUser = '';

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  /** An element whose children are nodes or strings (strings become text nodes). */
  function el(tag, attrs, ...children) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') n.className = v;
      else n.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) n.append(c instanceof Node ? c : String(c));
    return n;
  }

  function svg(tag, attrs, ...children) {
    const n = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, String(v));
    for (const c of children) n.append(c instanceof Node ? c : String(c));
    return n;
  }

  /** A status word with its colour class: readable without the colour. */
  function status(word, level) {
    return el('span', { class: `status ${level}` }, word);
  }

  function when(iso) {
    if (!iso) return '—';
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'medium' });
  }

  function clock(iso) {
    return new Date(iso).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
  }

  function ms(v) {
    return v === null || v === undefined ? '—' : `${v} ms`;
  }

  function table(head, rows, numeric = []) {
    const thead = el('thead', null, el('tr', null, ...head.map((h, i) => el('th', numeric.includes(i) ? { class: 'num', scope: 'col' } : { scope: 'col' }, h))));
    const tbody = el('tbody', null, ...rows.map((r) => el('tr', null, ...r.map((c, i) => el('td', numeric.includes(i) ? { class: 'num' } : null, c)))));
    return el('div', { class: 'table-wrap' }, el('table', null, thead, tbody));
  }

  /** A figure the system could not give is null: shown as "unknown" (with the reason as a tooltip), never as 0. */
  function figures(pairs) {
    return el(
      'dl',
      { class: 'figures' },
      ...pairs.map(([label, value, id, why]) =>
        el(
          'div',
          id ? { 'data-figure': id } : null,
          el('dt', null, label),
          value === null || value === undefined ? el('dd', { class: 'unknown', title: why || 'not available' }, 'unknown') : el('dd', null, value),
        ),
      ),
    );
  }

  async function api(path, init = {}) {
    const res = await fetch(API + path, {
      ...init,
      cache: 'no-store',
      credentials: 'omit',
      headers: { authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) || ''}`, accept: 'application/json' },
    });
    let data = null;
    try {
      data = await res.json();
    } catch {
      data = null;
    }
    if (!res.ok) throw new ApiError(res.status, (data && data.error && data.error.message) || `HTTP ${res.status}`);
    return data;
  }

  function panel(id) {
    return $(id).querySelector('.panel-body');
  }

  function fill(id, ...nodes) {
    panel(id).replaceChildren(...nodes);
  }

  function failure(err) {
    return el('p', { class: 'error' }, status('UNAVAILABLE', 'bad'), ' ', err.message);
  }

  function showMessage(text) {
    const m = $('message');
    m.textContent = text;
    m.hidden = !text;
  }

  // ---- Health -------------------------------------------------------------------------------

  function serviceLevel(state) {
    return state === 'SERVING' ? 'ok' : 'bad';
  }

  function historyChart(history) {
    const hours = history.hours;
    const W = 480;
    const H = 120;
    const top = 8;
    const base = H - 16;
    const slot = W / hours.length;
    const max = Math.max(1, ...hours.map((h) => Math.max(h.applied + h.conflicts + h.rejected, h.bulk_exports)));
    const scale = (v) => (v / max) * (base - top);
    const chart = svg('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `Sync outcomes and exports per hour, last ${hours.length} hours` });
    chart.append(svg('line', { class: 'axis', x1: 0, y1: base, x2: W, y2: base }));
    hours.forEach((h, i) => {
      const x = i * slot + slot * 0.15;
      const bw = slot * 0.45;
      const g = svg('g', null, svg('title', null, `${clock(h.start)}: ${h.applied} applied, ${h.conflicts} conflicts, ${h.rejected} rejected, ${h.bulk_exports} exports`));
      let y = base;
      for (const [field, cls] of [
        ['applied', 'bar-applied'],
        ['conflicts', 'bar-conflicts'],
        ['rejected', 'bar-rejected'],
      ]) {
        const hgt = scale(h[field]);
        if (hgt > 0) g.append(svg('rect', { class: cls, x, y: y - hgt, width: bw, height: hgt }));
        y -= hgt;
      }
      const eh = scale(h.bulk_exports);
      if (eh > 0) g.append(svg('rect', { class: 'bar-exports', x: x + bw + 1, y: base - eh, width: slot * 0.25, height: eh }));
      if (i % Math.ceil(hours.length / 6) === 0) g.append(svg('text', { x, y: H - 4 }, clock(h.start)));
      chart.append(g);
    });
    const total = (f) => hours.reduce((a, h) => a + h[f], 0);
    const key = (cls, label, value) => el('li', null, el('span', { class: cls, 'aria-hidden': 'true' }), `${label}: ${value}`);
    const legend = el(
      'ul',
      { class: 'legend', 'data-history': 'totals' },
      key('key-applied', 'Applied', total('applied')),
      key('key-conflicts', 'Conflicts', total('conflicts')),
      key('key-rejected', 'Rejected', total('rejected')),
      key('key-exports', 'Exports', total('bulk_exports')),
    );
    return [el('h3', null, `Last ${hours.length} hours`, history.degraded ? ' (incomplete: a service did not answer)' : ''), chart, legend];
  }

  function renderHealth(health, history, gateway) {
    const nodes = [];
    if (health.ok) {
      const h = health.value;
      const down = Object.entries(h.services).filter(([, s]) => s !== 'SERVING');
      nodes.push(
        el(
          'p',
          { 'data-overall': h.degraded ? 'degraded' : 'ok' },
          h.degraded ? status('DEGRADED', 'bad') : status('OK', 'ok'),
          ' ',
          h.degraded ? `Reason: ${down.map(([n, s]) => `${n} is ${s}`).join('; ') || 'a service did not answer'}` : 'Every service answers.',
        ),
      );
    } else {
      nodes.push(el('p', { 'data-overall': 'unavailable' }, status('UNAVAILABLE', 'bad'), ' Health service: ', health.reason.message));
    }
    const rows = [];
    for (const name of ['sync', 'workflow', 'export', 'health']) {
      const state = (health.ok && health.value.services[name]) || (gateway.ok && gateway.value.services[name]) || 'UNKNOWN';
      rows.push([name, status(state, serviceLevel(state))]);
    }
    if (gateway.ok) {
      const g = gateway.value;
      rows.push(['store', status(g.store.toUpperCase(), g.store === 'reachable' ? 'ok' : 'bad')]);
      rows.push(['redis', status(g.redis.toUpperCase(), g.redis === 'reachable' ? 'ok' : 'bad')]);
    } else {
      rows.push(['store / redis', failure(gateway.reason)]);
    }
    nodes.push(el('h3', null, 'Services and dependencies'), table(['Part', 'State'], rows));
    if (health.ok) {
      const h = health.value;
      nodes.push(
        el('h3', null, 'Last 24 hours'),
        figures([
          ['Sync applied', h.sync.applied_last_24h, 'applied', h.sync.unavailable_reason],
          ['Sync conflicts', h.sync.conflicts_last_24h, 'conflicts', h.sync.unavailable_reason],
          ['Sync rejected', h.sync.rejected_last_24h, 'rejected', h.sync.unavailable_reason],
          ['Bulk exports', h.exports.bulk_exports_last_24h, 'exports', h.exports.unavailable_reason],
          ['Overdue verification', h.workflow.overdue_verification, 'overdue_verification', h.workflow.unavailable_reason],
          ['Overdue approval', h.workflow.overdue_approval, 'overdue_approval', h.workflow.unavailable_reason],
        ]),
      );
    }
    if (history.ok) nodes.push(...historyChart(history.value));
    else nodes.push(el('h3', null, 'Last hours'), failure(history.reason));
    fill('health', ...nodes);
  }

  // ---- Jobs ---------------------------------------------------------------------------------

  function jobState(j) {
    if (!j.last_run_at) return status('NEVER RUN', 'warn');
    return j.last_error ? status('FAILING', 'bad') : status('OK', 'ok');
  }

  function outcome(o) {
    return status(o.toUpperCase(), o === 'success' ? 'ok' : o === 'running' ? 'warn' : 'bad');
  }

  async function runJob(name, button) {
    const result = $('job-result');
    button.disabled = true;
    button.textContent = 'Running…';
    result.replaceChildren(`Running ${name}…`);
    const mine = session;
    try {
      const run = await api(`/jobs/${encodeURIComponent(name)}/run/`, { method: 'POST' });
      if (mine !== session) return;
      result.replaceChildren(outcome(run.outcome), ` ${run.job}: attempt ${run.attempt}, ${ms(run.duration_ms)}`, run.error_message ? ` — ${run.error_message}` : '');
    } catch (err) {
      if (mine !== session) return;
      result.replaceChildren(status('FAILED', 'bad'), ` ${name}: ${err.message}`);
    }
    await refresh();
  }

  function renderJobs(jobs) {
    if (!jobs.ok) return fill('jobs', failure(jobs.reason));
    const rows = jobs.value.jobs.map((j) => {
      const button = el('button', { type: 'button', 'data-run': j.name }, 'Run now');
      button.addEventListener('click', () => runJob(j.name, button));
      return [j.name, j.schedule || '—', jobState(j), when(j.last_run_at), when(j.last_success_at), j.last_error || '—', ms(j.last_duration_ms), button];
    });
    const runs = jobs.value.recent_runs.map((r) => [r.job, when(r.started_at), r.attempt, outcome(r.outcome), ms(r.duration_ms), r.error_message || '—']);
    fill(
      'jobs',
      table(['Job', 'Schedule', 'State', 'Last run', 'Last success', 'Last error', 'Duration', ''], rows),
      el('h3', null, 'Latest runs'),
      runs.length ? table(['Job', 'Started', 'Attempt', 'Outcome', 'Duration', 'Error'], runs, [2, 4]) : el('p', { class: 'muted' }, 'No run yet.'),
    );
  }

  // ---- Throttling ---------------------------------------------------------------------------

  function sparkline(counts) {
    const W = 120;
    const H = 20;
    const max = Math.max(1, ...counts);
    const s = svg('svg', { class: 'spark', viewBox: `0 0 ${W} ${H}`, 'aria-hidden': 'true' });
    counts.forEach((c, i) => {
      if (c > 0) {
        const h = Math.max(1, (c / max) * H);
        s.append(svg('rect', { class: 'bar-429', x: (i * W) / counts.length, y: H - h, width: W / counts.length, height: h }));
      }
    });
    return s;
  }

  function renderThrottling(gateway) {
    if (!gateway.ok) return fill('throttling', failure(gateway.reason));
    const g = gateway.value;
    const rows = Object.entries(g.throttle_rejections.scopes).map(([scope, r]) => [
      scope,
      r.last_hour,
      r.last_hour > 0 ? status('THROTTLING', 'warn') : status('NONE', 'ok'),
      sparkline(r.per_minute),
    ]);
    fill(
      'throttling',
      el('h3', null, `429 responses in the last ${g.throttle_rejections.window_minutes} minutes`),
      table(['Scope', '429s', 'State', 'Per minute'], rows, [1]),
      el('p', { class: 'muted' }, `Counted by the gateway replica that answered (${g.replica}); each replica keeps its own.`),
    );
  }

  async function lookUpUser() {
    const out = $('throttle-user-result');
    if (!throttleUser) return out.replaceChildren();
    try {
      const r = await api(`/throttle-status/?user=${encodeURIComponent(throttleUser)}`);
      const rows = r.scopes.map((s) => [
        s.scope,
        `${s.used} / ${s.limit}`,
        s.remaining,
        `${s.window_seconds} s`,
        s.remaining === 0 ? status('AT LIMIT', 'bad') : s.remaining < s.limit / 5 ? status('NEAR LIMIT', 'warn') : status('OK', 'ok'),
        when(s.reset_at),
      ]);
      out.replaceChildren(el('h3', null, `Usage of ${r.user}`), table(['Scope', 'Used', 'Remaining', 'Window', 'State', 'Oldest leaves'], rows, [2]));
    } catch (err) {
      out.replaceChildren(failure(err));
    }
  }

  // ---- Overdue work -------------------------------------------------------------------------

  function renderOverdue(kpis) {
    if (!kpis.ok) return fill('overdue', failure(kpis.reason));
    const k = kpis.value;
    const permitRows = (list, hoursLabel) => list.map((p) => [p.permit_number, p.title, p.project_id, p.status, `${Number(p.hours).toFixed(1)} h ${hoursLabel}`]);
    fill(
      'overdue',
      figures([
        ['Pending verification', k.overdue.pending_verification, 'pending_verification'],
        ['Pending approval', k.overdue.pending_approval, 'pending_approval'],
        ['Expiring soon', k.overdue.expiring_soon, 'expiring_soon'],
        ['Isolation pending', k.overdue.isolation_pending, 'isolation_pending'],
        ['Closeout pending', k.overdue.closeout_pending, 'closeout_pending'],
      ]),
      el('h3', null, 'Most overdue steps'),
      k.lists.top_overdue.length
        ? table(['Permit', 'Title', 'Project', 'Status', 'Overdue'], permitRows(k.lists.top_overdue, 'overdue'), [4])
        : el('p', { class: 'muted' }, 'Nothing overdue.'),
      el('h3', null, 'Expiring soon'),
      k.lists.expiring_soon.length
        ? table(['Permit', 'Title', 'Project', 'Status', 'Ends in'], permitRows(k.lists.expiring_soon, 'left'), [4])
        : el('p', { class: 'muted' }, 'Nothing expiring soon.'),
    );
  }

  // ---- Session and refresh -------------------------------------------------------------------

  function settle(p) {
    return p.then(
      (value) => ({ ok: true, value }),
      (reason) => ({ ok: false, reason }),
    );
  }

  function signOut(text) {
    session++;
    clearTimeout(timer);
    sessionStorage.removeItem(TOKEN_KEY);
    $('panels').hidden = true;
    for (const id of ['health', 'jobs', 'throttling', 'overdue']) fill(id);
    $('job-result').replaceChildren();
    $('throttle-user-result').replaceChildren();
    $('as-of').textContent = '';
    $('login').hidden = false;
    $('sign-out').hidden = true;
    showMessage(text);
  }

  async function refresh() {
    clearTimeout(timer);
    const mine = session;
    const [health, gateway, jobs, kpis] = await Promise.all([settle(api('/permits/health/')), settle(api('/admin/gateway/')), settle(api('/jobs/')), settle(api('/permits/kpis/'))]);
    // The chart asks the store most: after the live figures, not competing with them.
    const history = !health.ok && [401, 403].includes(health.reason.status) ? health : await settle(api('/permits/health/history/'));
    if (mine !== session) return;
    const refused = [health, history, gateway, jobs, kpis].find((r) => !r.ok && (r.reason.status === 401 || r.reason.status === 403));
    if (refused) {
      return signOut(
        refused.reason.status === 401 ? 'The token was refused (missing, invalid or expired). Paste a new one.' : 'Not allowed: this console is for managers and service tokens only.',
      );
    }
    $('panels').hidden = false;
    renderHealth(health, history, gateway);
    renderJobs(jobs);
    renderThrottling(gateway);
    renderOverdue(kpis);
    await lookUpUser();
    if (mine !== session) return;
    const asOf = health.ok ? health.value.as_of : new Date().toISOString();
    $('as-of').textContent = `As of ${when(asOf)} · refreshes every ${REFRESH_MS / 1000} s`;
    // A refresh started by "run now" may overlap the timed one: keep one timer.
    clearTimeout(timer);
    timer = setTimeout(refresh, REFRESH_MS);
  }

  function open() {
    $('login').hidden = true;
    $('sign-out').hidden = false;
    showMessage('');
    $('as-of').textContent = 'Loading…';
    refresh();
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('login').addEventListener('submit', (e) => {
      e.preventDefault();
      const t = $('token')
        .value.trim()
        .replace(/^Bearer\s+/i, '');
      $('token').value = '';
      if (!t) return;
      session++;
      sessionStorage.setItem(TOKEN_KEY, t);
      open();
    });
    $('sign-out').addEventListener('click', () => signOut(''));
    $('throttle-form').addEventListener('submit', (e) => {
      e.preventDefault();
      throttleUser = $('throttle-user').value.trim();
      lookUpUser();
    });
    if (sessionStorage.getItem(TOKEN_KEY)) open();
  });
})();
