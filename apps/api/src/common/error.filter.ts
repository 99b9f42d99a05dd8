import { ArgumentsHost, Catch, ExceptionFilter, HttpException, Inject } from '@nestjs/common';
import type { Response } from 'express';
import type { Logger } from '@velocity/runtime';
import { LOGGER } from '../tokens';
import { ApiException } from './api-exception';

/**
 * Every error leaves as JSON `{ statusCode, error, message, field? }`. Unknown
 * errors are logged and answered 500 without internals.
 */
@Catch()
export class ErrorFilter implements ExceptionFilter {
  constructor(@Inject(LOGGER) private readonly logger: Logger) {}

  catch(exception: unknown, host: ArgumentsHost) {
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
