/** Nest injection tokens for the ports and shared objects the api uses. */
export const CONFIG = Symbol('CONFIG');
export const SESSION_STORE = Symbol('SESSION_STORE');
export const EVENT_LOG = Symbol('EVENT_LOG');
export const REDIS = Symbol('REDIS');
/** StreamWatcher: the one blocking connection all SSE endpoints of the process wait on. */
export const STREAM_WATCHER = Symbol('STREAM_WATCHER');
export const LOGGER = Symbol('LOGGER');
