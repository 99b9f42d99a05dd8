import type { Dependency } from '@velocity/ops';
import { ApiException } from './api-exception';

/** Long enough for a reconnect, short enough that a client's retry lands soon after recovery. */
export const OUTAGE_RETRY_AFTER_SECONDS = 2;

/** The api's one 503 for a backing service that did not answer: Retry-After, `dependency`, and the caller's message and fields. */
export function unavailable(dependency: Dependency, message: string, fields: Record<string, unknown> = {}): ApiException {
  return new ApiException(
    { statusCode: 503, error: 'Service Unavailable', message, dependency, retryAfterSeconds: OUTAGE_RETRY_AFTER_SECONDS, ...fields },
    { 'retry-after': String(OUTAGE_RETRY_AFTER_SECONDS) },
  );
}
