import { isUtf8 } from 'node:buffer';
import { json, raw, type NextFunction, type Request, type RequestHandler, type Response } from 'express';

type ErrorHandler = (err: unknown, req: Request, res: Response, next: NextFunction) => void;

/** The only requests that carry large bodies: file writes, `PUT /v1/projects/:id/files/<path>`, and `PATCH /v1/projects/:id/files`. */
const FILE_WRITE = /^\/v1\/projects\/[^/]+\/files\//i;
const FILES_CHANGE = /^\/v1\/projects\/[^/]+\/files\/?$/i;
/** A machine's read of named files, `POST /v1/machines/:sessionId/files`: up to MAX_PATHS_PER_READ paths. */
const MACHINE_FILES_READ = /^\/v1\/machines\/[^/]+\/files\/?$/i;
/** Room for MAX_PATHS_PER_READ paths of MAX_PATH_LENGTH characters, JSON-quoted. */
export const PATHS_BODY_LIMIT = '2mb';
/** Every other body is a few fields. */
export const SMALL_BODY_LIMIT = '64kb';

/**
 * The JSON body parser and its errors, answered in the api's error shape:
 * - a body on a /v1 route that is not `application/json`: 415 naming `content-type`,
 *   except a file write's, which is the file's bytes as they are (a Buffer, up to `rawFileLimit` bytes);
 * - malformed JSON: 400 naming `body`;
 * - larger than the limit (`fileLimit` for file writes, `rawFileLimit` for their raw bodies, PATHS_BODY_LIMIT for a machine's
 *   read of named files, 64 kB elsewhere): 413 naming `body`.
 */
export function jsonBody(limits: { fileLimit: string; rawFileLimit: number; changeLimit: string }): [RequestHandler, RequestHandler, ErrorHandler] {
  const { fileLimit, rawFileLimit, changeLimit } = limits;
  // JSON is UTF-8 (RFC 8259): bytes that are not are refused, where the parser would put U+FFFD in their place unsaid.
  const verify = (_req: unknown, _res: unknown, buffer: Buffer) => {
    if (!isUtf8(buffer)) throw Object.assign(new Error('not valid UTF-8'), { status: 400, type: 'entity.not.utf8' });
  };
  const large = json({ limit: fileLimit, verify });
  const change = json({ limit: changeLimit, verify });
  const small = json({ limit: SMALL_BODY_LIMIT, verify });
  const paths = json({ limit: PATHS_BODY_LIMIT, verify });
  // Any media type: an image/png body is stored as sent.
  const bytes = raw({ type: () => true, limit: rawFileLimit });
  const isFileWrite = (req: Request) => req.method === 'PUT' && FILE_WRITE.test(req.path);
  // type-is: false when there is a body and its type (if any) is not JSON; a body without a type is bytes (RFC 9110, 8.3).
  const isRawFileWrite = (req: Request) => isFileWrite(req) && req.is('application/json') === false;

  const requireJson: RequestHandler = (req, res, next) => {
    if (!/^\/v1\//i.test(req.path) || isRawFileWrite(req)) return next();
    // type-is: null when there is no body, false when its type is not JSON.
    const isJson = req.is('application/json');
    const got = req.headers['content-type'] ?? null;
    // JSON is UTF-8 (RFC 8259): another declared charset is refused, not transcoded.
    const charset = /;\s*charset\s*=\s*"?([^";\s]*)/i.exec(got ?? '')?.[1]?.toLowerCase();
    if (isJson === null || (isJson !== false && (charset === undefined || charset === 'utf-8' || charset === 'utf8'))) return next();
    res.status(415).json({
      statusCode: 415,
      error: 'Unsupported Media Type',
      message: `content-type: must be application/json${isJson ? '; charset=utf-8' : ''} (got ${JSON.stringify(got)?.slice(0, 100)})`,
      field: 'content-type',
    });
  };

  const isFilesChange = (req: Request) => req.method === 'PATCH' && FILES_CHANGE.test(req.path);
  const isMachineFilesRead = (req: Request) => req.method === 'POST' && MACHINE_FILES_READ.test(req.path);
  const parse: RequestHandler = (req, res, next) =>
    (isRawFileWrite(req) ? bytes : isFileWrite(req) ? large : isFilesChange(req) ? change : isMachineFilesRead(req) ? paths : small)(req, res, next);

  const onError: ErrorHandler = (err, req, res, next) => {
    const { type, status, message } = (err ?? {}) as { type?: string; status?: number; message?: string };
    // The parser's own errors (http-errors, 4xx): bad JSON, too large, a charset or encoding it cannot read, a body
    // that is not what Content-Encoding says (zlib), one shorter than Content-Length. Anything else is not ours.
    const fromParser = type?.startsWith('entity.') || type?.startsWith('request.') || type === 'charset.unsupported' || type === 'encoding.unsupported';
    if (!fromParser && !(type === undefined && status !== undefined && status >= 400 && status < 500)) return next(err);
    const statusCode = status && status >= 400 && status < 500 ? status : 400;
    const limit = isRawFileWrite(req)
      ? `${rawFileLimit} bytes, the most a file may have (MAX_FILE_BYTES)`
      : isFileWrite(req)
        ? fileLimit
        : isFilesChange(req)
          ? `${changeLimit}, for a project of MAX_PROJECT_BYTES`
          : isMachineFilesRead(req)
            ? PATHS_BODY_LIMIT
            : SMALL_BODY_LIMIT;
    const reason =
      type === 'entity.too.large' ? `larger than ${limit}` : type === 'entity.parse.failed' ? `not valid JSON (${message})` : type ? message : `could not be read (${message})`;
    const error = statusCode === 413 ? 'Payload Too Large' : statusCode === 415 ? 'Unsupported Media Type' : 'Bad Request';
    // Bad UTF-8 can only be inside a string; in a file write, the text is `content`.
    const field = type === 'encoding.unsupported' ? 'content-encoding' : statusCode === 415 ? 'content-type' : type === 'entity.not.utf8' && isFileWrite(req) ? 'content' : 'body';
    res.status(statusCode).json({ statusCode, error, message: `${field}: ${reason}`, field });
  };
  return [requireJson, parse, onError];
}
