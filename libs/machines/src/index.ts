// The MachineProvider port, its adapters (local, Fly, no-op), and the warm pool.
// Fault injection and the sandbox's internals stay inside: createMachineProvider
// wraps a provider in fault injection when FAULTS asks for it.
export * from './create-machine-provider';
export * from './faults';
export * from './fly-machine-provider';
export * from './fly-rate-limiter';
export * from './local-machine-provider';
export * from './machine-provider';
export * from './noop-machine-provider';
export * from './warm-pool';
