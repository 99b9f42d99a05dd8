import type { LoggerService } from '@nestjs/common';
import type { Logger } from '@velocity/runtime';

/**
 * Nest's own log output through the project's JSON logger (one line an event,
 * same fields), with Nest's context as `context`. Nest's `log` (its start-up
 * chatter: modules, routes) and `verbose` go to debug.
 */
export class NestLoggerAdapter implements LoggerService {
  constructor(private readonly logger: Logger) {}

  log(message: unknown, ...rest: unknown[]) {
    this.logger.debug(text(message), fieldsOf(rest));
  }

  verbose(message: unknown, ...rest: unknown[]) {
    this.logger.debug(text(message), fieldsOf(rest));
  }

  debug(message: unknown, ...rest: unknown[]) {
    this.logger.debug(text(message), fieldsOf(rest));
  }

  warn(message: unknown, ...rest: unknown[]) {
    this.logger.warn(text(message), fieldsOf(rest));
  }

  /** Nest calls `error(message, stack?, context?)`. */
  error(message: unknown, ...rest: unknown[]) {
    const fields = fieldsOf(rest);
    if (message instanceof Error) fields.err = message;
    this.logger.error(text(message), fields);
  }

  fatal(message: unknown, ...rest: unknown[]) {
    this.error(message, ...rest);
  }
}

function text(message: unknown): string {
  if (typeof message === 'string') return message;
  if (message instanceof Error) return message.message;
  try {
    return JSON.stringify(message);
  } catch {
    return String(message);
  }
}

/** Nest passes optional params then the context last: a string context, and a stack for errors. */
function fieldsOf(rest: unknown[]): Record<string, unknown> {
  const fields: Record<string, unknown> = {};
  const strings = rest.filter((r): r is string => typeof r === 'string');
  if (strings.length > 0) fields.context = strings[strings.length - 1];
  const stack = strings.find((s) => s.includes('\n    at '));
  if (stack) fields.stack = stack;
  return fields;
}
