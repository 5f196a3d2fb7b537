/**
 * An error Parley answered, in its one envelope
 * ({"error": {"code", "message", "details"}}), as a status before a stream
 * began or as an error event after it did; or a failure to reach Parley at
 * all (code "network", status 0).
 */
export class ParleyError extends Error {
  /** The HTTP status; 200 for an error event in a stream, 0 when no answer came. */
  readonly status: number;
  /** invalid_request, unauthenticated, forbidden, not_found, conflict, rate_limited, upstream_error, … */
  readonly code: string;
  readonly details?: Record<string, unknown>;
  /**
   * Seconds to wait before sending again, when Parley said: Retry-After, or
   * in a stream's error event (whose headers went before) details.retryAfterSeconds.
   */
  readonly retryAfter?: number;
  /** The completion's debug, when it was asked for and the completion ran. */
  readonly debug?: Record<string, unknown>;

  constructor(status: number, body: unknown, retryAfter?: number) {
    const e = envelope(body);
    super(e?.message ?? `Parley answered HTTP ${status}`);
    this.name = 'ParleyError';
    this.status = status;
    this.code = e?.code ?? (status === 0 ? 'network' : 'unknown');
    this.details = e?.details;
    const inDetails = e?.details?.retryAfterSeconds;
    this.retryAfter = retryAfter ?? (typeof inDetails === 'number' && inDetails > 0 ? inDetails : undefined);
    this.debug = e?.debug;
  }
}

interface Envelope {
  code?: string;
  message?: string;
  details?: Record<string, unknown>;
  debug?: Record<string, unknown>;
}

function envelope(body: unknown): Envelope | undefined {
  if (typeof body !== 'object' || body === null || !('error' in body)) return undefined;
  const e = (body as { error: unknown }).error;
  return typeof e === 'object' && e !== null ? (e as Envelope) : undefined;
}

/** retryAfter reads a Retry-After header in seconds (Parley sends seconds, never a date). */
export function retryAfter(headers: Headers): number | undefined {
  const v = headers.get('retry-after');
  if (v === null || !/^\d+$/.test(v.trim())) return undefined;
  return Number(v.trim());
}
