import { Injectable } from '@nestjs/common';
import { Logger } from 'nestjs-pino';

/**
 * Nest's own log output (start-up, exceptions) through nestjs-pino, on the
 * api's pino logger: the same JSON lines, with Nest's context as `context`.
 * Nest's `log` (its start-up chatter: modules, routes) and `verbose` go to debug.
 */
@Injectable()
export class NestLogger extends Logger {
  log(message: unknown, ...rest: unknown[]) {
    this.debug(message, ...rest);
  }

  verbose(message: unknown, ...rest: unknown[]) {
    this.debug(message, ...rest);
  }
}
