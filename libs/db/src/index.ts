export * from './command-counter';
export * from './connection';
export * from './models';
export * from './pushdown';
export * from './revisions';
export * from './each';
export * from './tallies';
