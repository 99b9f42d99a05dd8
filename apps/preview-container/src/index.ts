/**
 * The preview container's reusable parts. The program itself is `main.ts`, run
 * bundled (rolldown.config.mjs) as `node dist/apps/preview-container/src/main.js` with its env.
 */
export { loadConfig, ConfigError, type ContainerConfig } from './config';
export { routeRequest, type Route } from './session-routing';
export { safeRelativePath, resolveInside, UnsafePathError } from './path-safety';
export type { HealthReport } from './health';
