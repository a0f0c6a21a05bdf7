/**
 * HTTP helpers both daemons' endpoints share (admin, status, wait, blobs):
 * JSON bodies, error bodies with a stable code, bearer-token checks, and
 * bounded request bodies.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { InvalidOptionError, WalwireError } from '@walwire/protocol';
import { bearerToken, tokenMatches } from './auth.js';

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

/** `{ code, message }` with the given status. */
export function sendError(res: ServerResponse, status: number, code: string, message: string): void {
  sendJson(res, status, { code, message });
}

/**
 * Answers 401 with WALWIRE_ERR_UNAUTHORIZED unless the request carries the
 * right bearer token; the body reveals nothing else. Returns true when the
 * request may proceed.
 */
export function requireToken(req: IncomingMessage, res: ServerResponse, token: string): boolean {
  if (tokenMatches(bearerToken(req.headers.authorization), token)) return true;
  res.setHeader('www-authenticate', 'Bearer');
  sendError(res, 401, 'WALWIRE_ERR_UNAUTHORIZED', 'missing or wrong bearer token');
  return false;
}

/** Reads a JSON request body of at most `maxBytes`; an empty body is `{}`. */
export async function readJsonBody(req: IncomingMessage, maxBytes = 1024 * 1024): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) throw new InvalidOptionError(`request body exceeds ${maxBytes} bytes`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (text === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new InvalidOptionError(`request body is not JSON: ${JSON.stringify(text.slice(0, 40))}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidOptionError('request body must be a JSON object');
  }
  return value as Record<string, unknown>;
}

/**
 * Maps an error to an HTTP status: 400 for bad input (or a primary-only
 * request to a replica; a blob id, checksum or length that is wrong), 404
 * unknown namespace, route or blob, 409 namespace or blob exists, 413 blob
 * too large, 416 range not satisfiable, 503 closed or a namespace that is not
 * running yet, 504 timeout, else 500.
 */
export function statusForError(err: unknown): number {
  if (!(err instanceof WalwireError)) return 500;
  switch (err.code) {
    case 'WALWIRE_ERR_INVALID_OPTION':
    case 'WALWIRE_ERR_INVALID_NAMESPACE':
    case 'WALWIRE_ERR_NOT_A_PRIMARY':
    case 'WALWIRE_ERR_INVALID_BLOB_ID':
    case 'WALWIRE_ERR_BLOB_CHECKSUM':
    case 'WALWIRE_ERR_BLOB_INCOMPLETE':
      return 400;
    case 'WALWIRE_ERR_UNAUTHORIZED':
      return 401;
    case 'WALWIRE_ERR_UNKNOWN_NAMESPACE':
    case 'WALWIRE_ERR_NOT_FOUND':
      return 404;
    case 'WALWIRE_ERR_NAMESPACE_EXISTS':
    case 'WALWIRE_ERR_BLOB_EXISTS':
      return 409;
    case 'WALWIRE_ERR_BLOB_TOO_LARGE':
      return 413;
    case 'WALWIRE_ERR_RANGE_NOT_SATISFIABLE':
      return 416;
    case 'WALWIRE_ERR_TIMEOUT':
      return 504;
    case 'WALWIRE_ERR_CLOSED':
    case 'WALWIRE_ERR_NAMESPACE_UNAVAILABLE':
      return 503;
    default:
      return 500;
  }
}

/** Sends `err` as `{ code, message }` with statusForError. */
export function sendFailure(res: ServerResponse, err: unknown): void {
  const status = statusForError(err);
  const code = err instanceof WalwireError ? err.code : 'WALWIRE_ERR_INTERNAL';
  sendError(res, status, code, err instanceof Error ? err.message : String(err));
}

/** Matches `pattern` like "/v1/namespaces/:ns/wait" against a path; returns the params or null. */
export function matchRoute(pattern: string, path: string): Record<string, string> | null {
  const p = pattern.split('/');
  const a = path.split('/');
  if (p.length !== a.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < p.length; i++) {
    if (p[i]!.startsWith(':')) params[p[i]!.slice(1)] = decodeURIComponent(a[i]!);
    else if (p[i] !== a[i]) return null;
  }
  return params;
}

/**
 * The error code a request body that ends before its content-length gets,
 * per connection, while a route reads such a body (see bodyCode).
 */
const incompleteBodyCodes = new WeakMap<object, string>();

/**
 * Declares that the route is reading `req`'s body and what a body cut short
 * means there (e.g. WALWIRE_ERR_BLOB_INCOMPLETE for an upload): Node's HTTP
 * parser reports that case as a client error on the socket, not to the
 * route (answerClientError). Returns the function that ends the declaration.
 */
export function declareBodyCode(req: IncomingMessage, code: string): () => void {
  const socket = req.socket;
  incompleteBodyCodes.set(socket, code);
  return () => {
    if (incompleteBodyCodes.get(socket) === code) incompleteBodyCodes.delete(socket);
  };
}

/**
 * Server 'clientError' handler: a request Node's parser refused (malformed,
 * headers too large, a body that ended before its content-length, a
 * request timeout) gets a `{code, message}` answer like every other error,
 * unless a response is already under way, and the connection is closed.
 */
export function answerClientError(err: Error & { code?: string }, socket: Duplex): void {
  const inFlight = (socket as { _httpMessage?: ServerResponse })._httpMessage;
  if (err.code === 'ECONNRESET' || !socket.writable || inFlight?.headersSent === true) {
    socket.destroy();
    return;
  }
  let status = 400;
  let code = 'WALWIRE_ERR_INVALID_OPTION';
  let message = `malformed HTTP request (${err.code ?? err.message})`;
  if (err.code === 'HPE_INVALID_EOF_STATE') {
    code = incompleteBodyCodes.get(socket) ?? code;
    message = 'the connection ended before the request body reached its content-length';
  } else if (err.code === 'HPE_HEADER_OVERFLOW') {
    status = 431;
    message = 'request headers are too large';
  } else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    status = 408;
    code = 'WALWIRE_ERR_TIMEOUT';
    message = 'the request was not received in time';
  }
  const body = JSON.stringify({ code, message });
  const reason = status === 400 ? 'Bad Request' : status === 408 ? 'Request Timeout' : 'Request Header Fields Too Large';
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
}
