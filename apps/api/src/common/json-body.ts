import { json, type NextFunction, type Request, type RequestHandler, type Response } from 'express';

/**
 * The JSON body parser and its errors, answered in the api's error shape:
 * malformed JSON is a 400 naming `body`, an oversized one a 413.
 */
export function jsonBody(limit: string): [RequestHandler, (err: unknown, req: Request, res: Response, next: NextFunction) => void] {
  const onError = (err: unknown, _req: Request, res: Response, next: NextFunction) => {
    const { type, status, message } = (err ?? {}) as { type?: string; status?: number; message?: string };
    if (!type?.startsWith('entity.') && type !== 'charset.unsupported' && type !== 'encoding.unsupported') return next(err);
    const statusCode = status && status >= 400 && status < 500 ? status : 400;
    const reason = type === 'entity.too.large' ? `larger than ${limit}` : type === 'entity.parse.failed' ? `not valid JSON (${message})` : message;
    res.status(statusCode).json({ statusCode, error: statusCode === 413 ? 'Payload Too Large' : 'Bad Request', message: `body: ${reason}`, field: 'body' });
  };
  return [json({ limit }), onError];
}
