import type { Metadata } from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import type { Principal } from '../auth/principal';
import type { Logger } from '../logger';
import type { HopTrace } from '../tracing';

/** Metadata keys the gateway and the services exchange. */
export const REQUEST_ID_KEY = 'x-request-id';
export const AUTHORIZATION_KEY = 'authorization';
/** W3C Trace Context, as the gRPC instrumentation carries it. */
export const TRACEPARENT_KEY = 'traceparent';
export const TRACESTATE_KEY = 'tracestate';

const REQUEST_ID = /^[A-Za-z0-9_.:-]{1,128}$/;

/** Keeps a caller-supplied request id when it is a plain token, else makes a new one. */
export function normalizeRequestId(value: unknown): string {
  return typeof value === 'string' && REQUEST_ID.test(value) ? value : randomUUID();
}

/** What a handler knows about the call it serves. */
export interface CallContext {
  principal: Principal;
  /** The caller's bearer token, to forward when this service calls another. */
  token: string;
  reqId: string;
  log: Logger;
  metadata: Metadata;
  /** Aborted when the client cancels or the deadline passes. */
  signal: AbortSignal;
  /** The caller's trace in `ids` trace mode: fields for this call's own lines, headers for its calls. */
  trace?: HopTrace;
}

/** A CallContext whose logger and signal are made on first use (see implement in server.ts). */
export function callContext(principal: Principal, token: string, reqId: string, metadata: Metadata, logger: () => Logger, signal: () => AbortSignal, trace?: HopTrace): CallContext {
  return {
    principal,
    token,
    reqId,
    metadata,
    trace,
    get log() {
      return logger();
    },
    get signal() {
      return signal();
    },
  };
}
