import { randomUUID } from 'node:crypto';

/**
 * Request ids follow one session from `POST /v1/sessions` to `ready`: the api
 * takes a client's `x-request-id` when it is a safe token (else makes one), logs
 * it on every line of the request, puts it in the provisioning job, and the
 * provisioner binds it on the job's logger.
 */
export const REQUEST_ID_HEADER = 'x-request-id';

/** A safe token: what may go into a header, a log line and a job without escaping or abuse. */
export const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

/** The client's id when it is a safe token, else a new one. */
export function requestIdFrom(header: string | string[] | undefined): string {
  const value = Array.isArray(header) ? header[0] : header;
  return value !== undefined && REQUEST_ID_PATTERN.test(value) ? value : randomUUID();
}
