import { createClient, type Metrics } from '@ptw/common';
import { exportPb, healthPb, syncPb, workflowPb } from '@ptw/proto';
import type { GatewayConfig } from './config';

/** The gateway's gRPC clients, one per service. */
export function createClients(config: GatewayConfig, metrics: Metrics) {
  const o = { defaultDeadlineMs: config.PTW_GRPC_DEADLINE_MS, metrics };
  return {
    workflow: createClient(workflowPb.WorkflowServiceClient, config.PTW_WORKFLOW_ADDR, o),
    sync: createClient(syncPb.SyncServiceClient, config.PTW_SYNC_ADDR, o),
    export: createClient(exportPb.ExportServiceClient, config.PTW_EXPORT_ADDR, o),
    health: createClient(healthPb.HealthServiceClient, config.PTW_HEALTH_ADDR, o),
  };
}

export type Clients = ReturnType<typeof createClients>;

/** Closes every client channel. */
export function closeClients(clients: Clients): void {
  for (const c of Object.values(clients)) c.close();
}
