export * from './command-counter';
export * from './connection';
export * from './models';
export * from './revisions';
