export * from './rules';
export * from './input';
export * from './serialize';
export * from './permits';
export * from './isolation';
export * from './closeout';
export * from './inbox';
export * from './sla';
