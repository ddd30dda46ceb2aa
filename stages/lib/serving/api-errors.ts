/**
 * Errors as OpenAI's API sends them, `{error: {message, type, param, code}}`, for every 4xx and 5xx
 * the server answers: OpenAI's SDKs read exactly these keys (`e.error.message`, `e.type`, `e.code`,
 * `e.param`), and a client written against OpenAI's API handles this server's errors unchanged.
 *
 * `type` is OpenAI's class of error (invalid_request_error for anything the client can fix);
 * `code` says which case it is; `param` is the key path of the value at fault (items[0].title), or
 * null.
 */

export type ApiErrorType = 'invalid_request_error' | 'authentication_error' | 'not_found_error' | 'rate_limit_error' | 'server_error' | 'service_unavailable';

export interface ApiErrorBody {
  error: { message: string; type: ApiErrorType; param: string | null; code: string | null };
}

/** An error the route handlers throw; the server's error handler answers it with its status and body. */
export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    readonly type: ApiErrorType,
    readonly code: string,
    readonly param: string | null = null,
    /** Extra response headers (Retry-After, Allow). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  get body(): ApiErrorBody {
    return apiErrorBody(this.message, this.type, this.code, this.param);
  }
}

export function apiErrorBody(message: string, type: ApiErrorType, code: string | null, param: string | null = null): ApiErrorBody {
  return { error: { message, type, param, code } };
}

/** A 400 for a value the client sent: `param` names it, and leads the message. */
export const invalidRequest = (param: string | null, message: string, code = 'invalid_value') =>
  new ApiError(400, param === null || param === '' ? message : `${param}: ${message}`, 'invalid_request_error', code, param === '' ? null : param);

/** `status` of an error Fastify raised itself (a body it could not parse, an unsupported media type) as OpenAI's type. */
export function typeOfStatus(status: number): ApiErrorType {
  if (status === 401) return 'authentication_error';
  if (status === 404) return 'not_found_error';
  if (status === 429) return 'rate_limit_error';
  if (status === 503) return 'service_unavailable';
  return status >= 500 ? 'server_error' : 'invalid_request_error';
}
