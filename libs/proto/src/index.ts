import path from 'node:path';
import { fromBinary, toBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema, FileDescriptorSetSchema, type DescriptorProto } from '@bufbuild/protobuf/wkt';
import { DESCRIPTOR_SET_BASE64 } from './gen/descriptors';

export * as commonPb from './gen/ptw/common/v1/common';
export * as workflowPb from './gen/ptw/workflow/v1/workflow';
export * as syncPb from './gen/ptw/sync/v1/sync';
export * as exportPb from './gen/ptw/export/v1/export';
export * as healthPb from './gen/ptw/health/v1/health';

/** Folder of the .proto sources (dynamic clients, e.g. grpc-mock in the gateway's tests, load them from here). */
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

/** One file of the compiled descriptor set. */
export interface DescriptorFile {
  /** Its path, e.g. `ptw/common/v1/common.proto`. */
  name: string;
  /** The files it imports, by path. */
  dependencies: string[];
  /** Its top-level messages by full name (`ptw.common.v1.PermitFilter`). */
  messages: Map<string, DescriptorProto>;
  /** The file as a serialised google.protobuf.FileDescriptorProto, as protoc compiles it (imports, absolute type names, comments). */
  bytes: Buffer;
}

/**
 * The files of the descriptor set made by `npm run generate` (descriptors.js): protos/ with its
 * imports, grpc.health.v1 and grpc.reflection v1/v1alpha — what server reflection serves.
 */
export function descriptorFiles(): DescriptorFile[] {
  return fromBinary(FileDescriptorSetSchema, Buffer.from(DESCRIPTOR_SET_BASE64, 'base64')).file.map((f) => ({
    name: f.name,
    dependencies: f.dependency,
    messages: new Map(f.messageType.map((m) => [`${f.package}.${m.name}`, m])),
    bytes: Buffer.from(toBinary(FileDescriptorProtoSchema, f)),
  }));
}
