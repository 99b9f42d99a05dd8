import { pino, stdSerializers, symbols, type DestinationStream, type Logger as Pino } from 'pino';

/**
 * Structured logs: one JSON line an event, with `level`, `time` (ISO), the app
 * name, and, where there is one, the session id. `child()` binds fields
 * (sessionId, jobId) for a scope. Pino writes the lines; `Logger` is the small
 * interface the code logs through (`info(msg, fields)`), so callers never
 * depend on pino's argument order.
 *
 * Errors keep their stack and their causes (nested): `err` goes through pino's
 * errWithCause serializer, and so does an Error under any other top-level key
 * (a bare Error would otherwise serialise as `{}`).
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

export interface LoggerOptions {
  /** Fields on every line (the scope's `child()` bindings). */
  bindings?: LogFields;
  /** Where the lines go (default process.stdout, which keeps them in order with the process's other output). */
  destination?: DestinationStream;
  /** Fields of the current scope added to each line, read per line (e.g. the api's request id); bound fields win. */
  context?: () => LogFields | undefined;
}

const LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error', 'silent'];

/** Where credentials would sit in a logged request, response or client call: never written. */
const REDACTED_PATHS = [
  'authorization',
  'headers.authorization',
  'headers.cookie',
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
];

/** LOG_LEVEL when it names a level, else info. */
export function logLevelFromEnv(value = process.env.LOG_LEVEL): LogLevel {
  return LEVELS.includes(value as LogLevel) ? (value as LogLevel) : 'info';
}

/** The pino logger behind every `Logger` of a process (also what pino-http and nestjs-pino take). */
export function createPino(app: string, level: LogLevel = logLevelFromEnv(), options: LoggerOptions = {}): Pino {
  const { context, destination = process.stdout, bindings = {} } = options;
  return pino(
    {
      level,
      base: { app },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }), log: serializeErrors },
      serializers: { err: stdSerializers.errWithCause },
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      ...(context ? { mixin: (_line: object, _level: number, logger: Pino) => unbound(context(), logger) } : {}),
    },
    destination,
  ).child(bindings);
}

/** A `Logger` over a pino logger. */
export function loggerOver(logger: Pino): Logger {
  const adapter: Logger = {
    debug: (msg, fields = {}) => logger.debug(fields, msg),
    info: (msg, fields = {}) => logger.info(fields, msg),
    warn: (msg, fields = {}) => logger.warn(fields, msg),
    error: (msg, fields = {}) => logger.error(fields, msg),
    child: (fields) => loggerOver(logger.child(fields)),
  };
  pinos.set(adapter, logger);
  return adapter;
}

export function createLogger(app: string, level?: LogLevel, options?: LoggerOptions): Logger {
  return loggerOver(createPino(app, level, options));
}

const pinos = new WeakMap<Logger, Pino>();

/** The pino logger behind a `Logger` of `createLogger`/`loggerOver`, for pino-aware libraries. */
export function pinoOf(logger: Logger): Pino {
  const found = pinos.get(logger);
  if (!found) throw new Error('pinoOf: this Logger was not made by createLogger or loggerOver');
  return found;
}

/** An Error under a key other than `err` (which the serializer handles) with its stack and causes, not `{}`. */
function serializeErrors(line: Record<string, unknown>): Record<string, unknown> {
  for (const [key, value] of Object.entries(line)) {
    if (key !== 'err' && value instanceof Error) line = { ...line, [key]: stdSerializers.errWithCause(value) };
  }
  return line;
}

/** The context's fields that the logger does not bind already (one key once a line; the binding wins). */
function unbound(fields: LogFields | undefined, logger: Pino): LogFields {
  if (!fields) return {};
  const bound = (logger as unknown as Record<symbol, string>)[symbols.chindingsSym] ?? '';
  return Object.fromEntries(Object.entries(fields).filter(([key]) => !bound.includes(`"${key}":`)));
}
