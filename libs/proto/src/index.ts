import path from 'node:path';

export * as commonPb from './gen/ptw/common/v1/common';
export * as workflowPb from './gen/ptw/workflow/v1/workflow';
export * as syncPb from './gen/ptw/sync/v1/sync';
export * as exportPb from './gen/ptw/export/v1/export';
export * as healthPb from './gen/ptw/health/v1/health';

/** Folder of the .proto sources (server reflection and dynamic clients load them from here). */
export const PROTO_ROOT = path.resolve(__dirname, '..', '..', '..', 'protos');

/** Each service's proto file, relative to PROTO_ROOT. */
export const PROTO_FILES = {
  sync: 'ptw/sync/v1/sync.proto',
  workflow: 'ptw/workflow/v1/workflow.proto',
  export: 'ptw/export/v1/export.proto',
  health: 'ptw/health/v1/health.proto',
} as const;

/** Fully qualified gRPC service names (also their grpc.health.v1 names). */
export const SERVICE_NAMES = {
  sync: 'ptw.sync.v1.SyncService',
  workflow: 'ptw.workflow.v1.WorkflowService',
  export: 'ptw.export.v1.ExportService',
  health: 'ptw.health.v1.HealthService',
} as const;
