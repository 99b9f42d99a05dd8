// What every process runs on, the preview machine included: logging, HTTP client and server helpers, the SSE client,
// turns (a bounded number of runs at once, the others waiting in order).
export * from './http-client';
export * from './http-server';
export * from './logger';
export * from './net';
export * from './repo-root';
export * from './retry';
export * from './session-events-client';
export * from './sse-client';
export * from './turns';
