/**
 * The primary's blob endpoints (the ReplicationServer authenticates every
 * request before these routes see it):
 *
 *   PUT    /v1/namespaces/:ns/blobs/:id  body = content  → 201 {id, sha256, size, seq, created: true}
 *                                                          (200 with created: false when identical content existed)
 *   POST   /v1/namespaces/:ns/blobs      body = content  → same, id := the content's SHA-256
 *   GET    /v1/namespaces/:ns/blobs/:id  (and HEAD)      → the content (serveBlob: ETag, Range)
 *   DELETE /v1/namespaces/:ns/blobs/:id                  → 200 {id, seq}
 *   GET    /v1/namespaces/:ns/blobs                      → {blobs: [{id, sha256, size}], count, bytes}
 *
 * Uploads stream into the BlobStore (never buffered); an optional
 * x-walwire-sha256 header is verified against the content, content-length
 * is the declared size. Errors are `{code, message}` with statusForError.
 *
 * The path is split from the raw request URL, not through WHATWG URL
 * parsing, which would resolve `..` (or `%2e%2e`) before the id is seen:
 * such an id must be refused as invalid, not routed somewhere else.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { InvalidBlobIdError, WalwireError } from '@walwire/protocol';
import { type Logger, declareBodyCode, sendFailure, sendJson, serveBlob } from '@walwire/runtime';
import type { Primary } from './primary.js';

/** `{ns, id?}` of a blob path, or null for any other path. */
function parseBlobPath(url: string): { ns: string; id: string | undefined } | null {
  const path = url.split('?', 1)[0]!;
  const parts = path.split('/');
  if (parts.length < 5 || parts.length > 6 || parts[0] !== '' || parts[1] !== 'v1' || parts[2] !== 'namespaces' || parts[4] !== 'blobs') return null;
  const decode = (s: string, what: string): string => {
    try {
      return decodeURIComponent(s);
    } catch {
      throw new InvalidBlobIdError(`${what} ${JSON.stringify(s)} is not valid percent-encoding`);
    }
  };
  return { ns: decode(parts[3]!, 'namespace'), id: parts.length === 6 ? decode(parts[5]!, 'blob id') : undefined };
}

/**
 * The request body, pulled with `read()`. Unlike the stream's own async
 * iterator, stopping early (a refused upload) does not destroy the request:
 * destroying an incomplete IncomingMessage destroys its socket, and the
 * error answer with it. An aborted upload ends the iteration with an error.
 */
function bodyOf(req: IncomingMessage): AsyncIterable<Uint8Array> {
  return (async function* () {
    for (;;) {
      const chunk = req.read() as Buffer | null;
      if (chunk !== null) {
        yield chunk;
        continue;
      }
      if (req.readableEnded) return;
      if (req.destroyed) throw new Error(`upload aborted: ${req.errored?.message ?? 'connection closed'}`);
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          for (const event of ['readable', 'end', 'close', 'error']) req.off(event, wake);
          resolve();
        };
        for (const event of ['readable', 'end', 'close', 'error']) req.on(event, wake);
      });
    }
  })();
}

/**
 * After refusing an upload whose body is still arriving, the rest is read
 * and dropped for a while before the connection is cut ("lingering close"):
 * closing a socket with unread data makes the kernel send a reset, which
 * can destroy the error answer before the client reads it. A body that
 * ends within the budget leaves the connection usable.
 */
const LINGER_BYTES = 8 * 1024 * 1024;
const LINGER_MS = 2000;

function linger(req: IncomingMessage): void {
  let dropped = 0;
  const cut = (): void => {
    clearTimeout(timer);
    req.socket.destroy();
  };
  const timer = setTimeout(cut, LINGER_MS);
  timer.unref();
  req.on('data', (chunk: Buffer) => {
    dropped += chunk.length;
    if (dropped > LINGER_BYTES) cut();
  });
  req.on('end', () => clearTimeout(timer));
  req.on('close', () => clearTimeout(timer));
  req.on('error', () => clearTimeout(timer));
  req.resume();
}

export class BlobRoutes {
  readonly #primary: Primary;
  readonly #logger: Logger;

  constructor(primary: Primary, logger: Logger) {
    this.#primary = primary;
    this.#logger = logger.child({ component: 'blobs' });
  }

  /** Routes of this module; false when the request is not one of them. Never throws. */
  async handle(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    let target: { ns: string; id: string | undefined } | null;
    try {
      target = parseBlobPath(req.url ?? '/');
    } catch (err) {
      this.#fail(req, res, err, {});
      return true;
    }
    if (target === null) return false;
    const { ns, id } = target;
    const method = req.method ?? 'GET';
    try {
      if (id === undefined) {
        if (method === 'GET') {
          const store = this.#primary.blobs(ns);
          const blobs = store.list().map((b) => ({ id: b.id, sha256: b.sha256, size: b.size }));
          sendJson(res, 200, { blobs, count: store.files.count, bytes: store.files.bytes });
          return true;
        }
        if (method === 'POST') {
          await this.#upload(req, res, ns, undefined);
          return true;
        }
        return false;
      }
      switch (method) {
        case 'PUT':
          await this.#upload(req, res, ns, id);
          return true;
        case 'GET':
        case 'HEAD':
          await serveBlob(req, res, this.#primary.blobs(ns).files, id);
          return true;
        case 'DELETE': {
          const result = await this.#primary.deleteBlob(ns, id);
          this.#logger.info({ ns, id, seq: result.seq }, 'blob deleted');
          sendJson(res, 200, result);
          return true;
        }
        default:
          return false;
      }
    } catch (err) {
      this.#fail(req, res, err, { ns, id, method });
      return true;
    }
  }

  async #upload(req: IncomingMessage, res: ServerResponse, ns: string, id: string | undefined): Promise<void> {
    const store = this.#primary.blobs(ns);
    const length = req.headers['content-length'];
    const sha256 = req.headers['x-walwire-sha256'];
    // A body cut short by the client (FIN before content-length) is reported
    // by Node's parser on the socket; this names the code of that answer.
    const undeclare = declareBodyCode(req, 'WALWIRE_ERR_BLOB_INCOMPLETE');
    let result;
    try {
      result = await store.put(bodyOf(req), {
        ...(id === undefined ? {} : { id }),
        ...(typeof sha256 === 'string' ? { sha256: sha256.trim() } : {}),
        // Node has already refused a malformed content-length (400 from the parser).
        ...(length === undefined ? {} : { size: Number(length) }),
      });
    } finally {
      undeclare();
    }
    this.#logger.info({ ns, id: result.id, sha256: result.sha256, size: result.size, seq: result.seq, created: result.created }, 'blob stored');
    sendJson(res, result.created ? 201 : 200, result);
  }

  /**
   * Answers an error. When the request body was not read to its end (a
   * refused upload), the rest is dropped for a bounded time and size, then
   * the connection is cut (see linger): nobody reads gigabytes of a body
   * that will not be stored. When the client is gone (an aborted upload),
   * there is nobody to answer.
   */
  #fail(req: IncomingMessage, res: ServerResponse, err: unknown, context: Record<string, unknown>): void {
    const code = err instanceof WalwireError ? err.code : 'WALWIRE_ERR_INTERNAL';
    const log = err instanceof WalwireError ? this.#logger.warn.bind(this.#logger) : this.#logger.error.bind(this.#logger);
    log({ ...context, code, err: (err as Error)?.message }, 'blob request failed');
    if (req.socket.destroyed || res.writableEnded) return;
    if (res.headersSent) {
      res.destroy();
      return;
    }
    sendFailure(res, err);
    if (!req.complete) linger(req);
  }
}
