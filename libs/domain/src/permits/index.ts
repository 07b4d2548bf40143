/**
 * Permit repository operations: every read is project-scoped, every write is version-guarded by
 * the revisions unique index (see @ptw/db claimVersion), every transition is audited.
 */
export * from './types';
export * from './effects';
export * from './query';
export * from './versioning';
export * from './commands';
