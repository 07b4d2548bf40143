/** What a route reads from its request: the caller's credentials, the body, the query string. */
import type { Context } from 'koa';
import type { CallCredentials } from '@ptw/common';
import { HttpError } from './errors';
import { onDisconnect } from './middleware/request';
import type { GatewayState } from './state';

/** Credentials to forward on the gRPC call made for this request. */
export function creds(ctx: Context): CallCredentials {
  const s = ctx.state as GatewayState;
  return { token: s.token ?? '', reqId: s.reqId, onCancel: onDisconnect(ctx), trace: s.trace };
}

/** The parsed JSON body (an object; see middleware/body.ts). */
export function body(ctx: Context): Record<string, unknown> {
  return (ctx.request as unknown as { body?: Record<string, unknown> }).body ?? {};
}

/** A single query parameter as a string ('' when absent); repeated parameters are refused. */
export function query(ctx: Context, name: string): string {
  const v = ctx.query[name];
  if (Array.isArray(v)) throw new HttpError(400, 'invalid_argument', `${name}: given more than once`, { field: name });
  return v ?? '';
}

/** The permit list filters of SPEC §4 from the query string (shared with exports). */
export function permitFilter(ctx: Context) {
  const status = query(ctx, 'status');
  return {
    status: status
      ? status
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean)
      : [],
    permit_type: query(ctx, 'permit_type'),
    project: query(ctx, 'project'),
    created_from: query(ctx, 'created_from'),
    created_to: query(ctx, 'created_to'),
    planned_end_from: query(ctx, 'planned_end_from'),
    planned_end_to: query(ctx, 'planned_end_to'),
    q: query(ctx, 'q'),
  };
}
