import { HttpException } from '@nestjs/common';
import type { HttpResponse } from '../http/problem.js';

/**
 * A refusal (429, or 503 when shedding, 403 for a denied client, 400 for a missing key) as Nest's own
 * exception, so that exception filters see it. Its response is the problem body (RFC 9457) the other
 * adapters send, with Nest's own `statusCode` and `message` members beside (as Nest's exceptions and e2e
 * tests expect); Nest serves it as `application/json`.
 */
export class FloodgateException extends HttpException {
  constructor(response: HttpResponse) {
    // A refusal is not a fault: no stack is captured, which is most of what throwing through Nest costs.
    const depth = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      super(body(response), response.status);
    } finally {
      Error.stackTraceLimit = depth;
    }
  }
}

function body(response: HttpResponse): string | object {
  try {
    const problem = JSON.parse(response.body) as { detail?: unknown; title?: unknown };
    return { ...problem, statusCode: response.status, message: problem.detail ?? problem.title };
  } catch {
    return response.body;
  }
}
