// The MachineProvider port, its adapters (local, Fly, no-op, fault-injecting), and the warm pool.
export * from './create-machine-provider';
export * from './fault-injecting-machine-provider';
export * from './faults';
export * from './fly-machine-provider';
export * from './local-machine-provider';
export * from './machine-provider';
export * from './machine-sandbox';
export * from './noop-machine-provider';
export * from './warm-pool';
