/**
 * Structured logs: one JSON line an event, with the app name and, where there is
 * one, the session id. `child()` binds fields (sessionId, jobId) for a scope.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

export function createLogger(
  app: string,
  level: LogLevel = (process.env.LOG_LEVEL as LogLevel) ?? 'info',
  bound: Record<string, unknown> = {},
  write: (line: string) => void = (line) => process.stdout.write(line + '\n'),
  /** Fields of the current scope added to every line, e.g. the api's request id (read per line, not bound). */
  context?: () => Record<string, unknown> | undefined,
): Logger {
  const min = ORDER[level] ?? ORDER.info;
  const log = (lvl: Exclude<LogLevel, 'silent'>) => (msg: string, fields: Record<string, unknown> = {}) => {
    if (ORDER[lvl] < min) return;
    const err = fields.err instanceof Error ? { err: { message: fields.err.message, name: fields.err.name } } : {};
    write(JSON.stringify({ time: new Date().toISOString(), level: lvl, app, ...context?.(), ...bound, msg, ...fields, ...err }));
  };
  return {
    debug: log('debug'),
    info: log('info'),
    warn: log('warn'),
    error: log('error'),
    child: (fields) => createLogger(app, level, { ...bound, ...fields }, write, context),
  };
}
