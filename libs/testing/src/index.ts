// What only specs import: doubles, harnesses, contract suites, Jest global setup, fixtures.
export * from './fly-api-double';
export * from './fly-machine-runner';
export * from './fly-proxy-double';
export * from './machine-provider.contract';
export * from './postgrest-recorder';
export * from './projects';
export * from './prometheus';
export * from './registry-hooks';
export * from './session-store.contract';
export * from './setup-localhost-fetch';
export * from './test-api';
export * from './test-env';
export * from './test-registry';
export * from './raw-http';
export * from './tokens';
export * from './tcp-proxy';
