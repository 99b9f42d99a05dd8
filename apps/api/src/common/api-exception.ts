import { HttpException } from '@nestjs/common';

/** An HttpException that also sets response headers (`Retry-After`, `WWW-Authenticate`); ErrorFilter applies them. */
export class ApiException extends HttpException {
  constructor(
    body: { statusCode: number; error: string; message: string; field?: string; [key: string]: unknown },
    readonly headers: Record<string, string> = {},
  ) {
    super(body, body.statusCode);
  }
}
