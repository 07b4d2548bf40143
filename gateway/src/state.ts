import type { HopTrace, Principal } from '@ptw/common';

/** What the middlewares put on `ctx.state` for the routes. */
export interface GatewayState {
  reqId: string;
  principal?: Principal;
  token?: string;
  /** Route pattern for logs and metrics (never the raw URL: its query may hold search text). */
  endpoint?: string;
  /** The caller's trace when tracing runs without an endpoint (see incomingTraceContext). */
  trace?: HopTrace;
}
