// The contracts every app shares. Adapters are exported too, for composition
// roots (main.ts files) only: business logic depends on the ports.
export * from './config';
export * from './errors';
export * from './events';
export * from './event-log';
export * from './logger';
export * from './machine-provider';
export * from './machine-token';
export * from './queues';
export * from './session-state';
export * from './session-store';
export * from './templates';
export * from './tiers';
export * from './routes';
export * from './preflight';
export * from './sse-client';
export * from './session-events-client';
export * from './redis';
export * from './migrate';
export * from './adapters/postgres-session-store';
export * from './adapters/local-machine-provider';
export * from './adapters/factories';
export * from './adapters/fault-injecting-machine-provider';
export * from './faults';
