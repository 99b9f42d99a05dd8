/** Nest injection tokens for the ports and shared objects the api uses. */
export const CONFIG = Symbol('CONFIG');
export const SESSION_STORE = Symbol('SESSION_STORE');
export const EVENT_LOG = Symbol('EVENT_LOG');
export const REDIS = Symbol('REDIS');
export const LOGGER = Symbol('LOGGER');
