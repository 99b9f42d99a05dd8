import { loadConfig, publicUrl } from '@velocity/contracts';

/**
 * The command-line client's calls to the api: where it is, the token it sends,
 * and errors that read as one line (`404 Session … does not exist`, or the URL
 * that could not be reached).
 */
export interface Api {
  /** The api's base URL, without a trailing slash. */
  base: string;
  /** `authorization: Bearer <VP_TOKEN>` when VP_TOKEN is set. */
  headers: Record<string, string>;
}

/**
 * The api's address: `--api`, else VP_API_URL, else the address the services
 * are configured with (PUBLIC_URL, else http://API_HOST:API_PORT), read from
 * the environment as the services read it (loadConfig).
 */
export function apiOf(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): Api {
  const base = (flag ?? (env.VP_API_URL || undefined) ?? publicUrl(loadConfig(env))).replace(/\/+$/, '');
  let url: URL;
  try {
    url = new URL(base);
  } catch {
    throw new BadApiUrl(`${flag === undefined ? 'VP_API_URL' : '--api'} must be a URL, got ${base}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new BadApiUrl(`${flag === undefined ? 'VP_API_URL' : '--api'} must be an http(s) URL, got ${base}`);
  return { base, headers: env.VP_TOKEN ? { authorization: `Bearer ${env.VP_TOKEN}` } : {} };
}

/** `--api` (or VP_API_URL) is not a URL: a wrong command line. */
export class BadApiUrl extends Error {}

/** An answer of 400 and up: its status, and the api's message and field (`{ message, field }`). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly apiMessage: string,
    readonly field?: string,
  ) {
    // The field is named unless the message names it already (400s start with it: `templateType: must be …`).
    super(`${status} ${apiMessage}${field && !apiMessage.includes(field) ? ` (field: ${field})` : ''}`);
  }
}

/** The api did not answer at all: names the URL that was tried. */
export class Unreachable extends Error {
  constructor(method: string, url: string, err: unknown) {
    super(`cannot reach the api: ${method} ${url} failed (${causeOf(err)}); is it running (npm start), and is --api or VP_API_URL right?`);
  }
}

/** The error code (`ECONNREFUSED`, `ENOTFOUND`…) behind a failed request (fetch's or node's own), else its message. */
export function causeOf(err: unknown): string {
  const { cause, code } = err as { cause?: { code?: string; message?: string }; code?: string };
  return cause?.code ?? cause?.message ?? code ?? (err as Error).message ?? String(err);
}

/** The ApiError an answer of 400 and up stands for. */
export async function apiErrorOf(res: Response): Promise<ApiError> {
  return apiErrorFrom(res.status, await res.text().catch(() => ''), res.statusText);
}

/** The ApiError of an answer's status and body: the api's `{ message, field }`, else the body's first line, else the status text. */
export function apiErrorFrom(status: number, text: string, statusText: string): ApiError {
  try {
    const body = JSON.parse(text) as { message?: unknown; field?: unknown };
    if (typeof body.message === 'string') return new ApiError(status, body.message, typeof body.field === 'string' ? body.field : undefined);
  } catch {
    // Not JSON: the text itself.
  }
  return new ApiError(status, text.trim().split('\n', 1)[0] || statusText);
}

/** One JSON request: the parsed answer, an ApiError for 400 and up, Unreachable when nothing answered. */
export async function call<T>(api: Api, method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<T> {
  const url = `${api.base}${path}`;
  let res: Response;
  try {
    res = await fetch(url, {
      method,
      headers: { ...api.headers, accept: 'application/json', ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
  } catch (err) {
    throw new Unreachable(method, url, err);
  }
  if (res.status >= 400) throw await apiErrorOf(res);
  const text = await res.text();
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new Error(`${method} ${url} answered ${res.status} with something other than JSON: ${text.slice(0, 200)}`);
  }
}
