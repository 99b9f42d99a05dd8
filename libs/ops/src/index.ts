// Service infrastructure: Redis connections, the event log, metrics, readiness, the ops server, operator auth, preflight, migrations, app processes.
export * from './app-processes';
export * from './enqueue';
export * from './event-log';
export * from './metrics';
export * from './migrate';
export * from './operator-auth';
export * from './ops-server';
export * from './preflight';
export * from './readiness';
export * from './redis';
export * from './stream-watcher';
export * from './outage';
export * from './withdrawn-requests';
