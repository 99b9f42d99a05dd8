/** Nest injection tokens for the ports and shared objects the api uses. */
export const CONFIG = Symbol('CONFIG');
export const SESSION_STORE = Symbol('SESSION_STORE');
export const EVENT_LOG = Symbol('EVENT_LOG');
export const REDIS = Symbol('REDIS');
/** BlockingReaders: connections for the SSE endpoints' blocking reads. */
export const READERS = Symbol('READERS');
export const LOGGER = Symbol('LOGGER');
