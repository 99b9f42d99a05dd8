import { ArgumentsHost, Catch, ExceptionFilter, HttpException, Inject } from '@nestjs/common';
import type { Response } from 'express';
import type { Logger } from '@velocity/runtime';
import { outageOf } from '@velocity/ops';
import { LOGGER } from '../tokens';
import { ApiException } from './api-exception';
import { OUTAGE_RETRY_AFTER_SECONDS, unavailable } from './unavailable';

/**
 * Every error leaves as JSON `{ statusCode, error, message, field? }`. Redis or
 * the database not answering is a 503 with Retry-After, naming which. Unknown
 * errors are logged and answered 500 without internals.
 */
@Catch()
export class ErrorFilter implements ExceptionFilter {
  constructor(@Inject(LOGGER) private readonly logger: Logger) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    const res = host.switchToHttp().getResponse<Response>();
    if (res.headersSent) return void res.end();
    if (exception instanceof HttpException) {
      const status = exception.getStatus();
      const body = exception.getResponse();
      const payload =
        typeof body === 'string'
          ? { statusCode: status, error: exception.name, message: body }
          : { statusCode: status, ...(body as object), ...undecodableParam(body) };
      if (exception instanceof ApiException) res.set(exception.headers);
      return void res.status(status).json(payload);
    }
    const outage = outageOf(exception);
    if (outage) {
      this.logger.warn('request failed: a backing service did not answer', { dependency: outage.dependency, err: exception as Error });
      const message = `${DEPENDENCY_NAMES[outage.dependency]} did not answer (${outage.detail}); retry in ${OUTAGE_RETRY_AFTER_SECONDS} s`;
      return this.catch(unavailable(outage.dependency, message), host);
    }
    this.logger.error('unhandled error', { err: exception as Error });
    res.status(500).json({ statusCode: 500, error: 'Internal Server Error', message: 'Internal server error' });
  }
}

/** The router's own 400 for a URL segment that is not valid percent-encoding, named like the api's others. */
function undecodableParam(body: unknown): { message: string; field: string } | object {
  const message = (body as { message?: unknown }).message;
  if (typeof message !== 'string' || !message.startsWith('Failed to decode param')) return {};
  return { message: `path: not valid percent-encoding (${message})`, field: 'path' };
}

const DEPENDENCY_NAMES = { redis: 'Redis', database: 'The database' } as const;
