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
import { type Logger, sendFailure, sendJson, serveBlob } from '@walwire/runtime';
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
 * The request body as an iterable that never destroys the request when the
 * consumer stops early (a refused upload): destroying an incomplete
 * IncomingMessage destroys its socket, and the error answer with it.
 */
function bodyOf(req: IncomingMessage): AsyncIterable<Uint8Array> {
  return {
    [Symbol.asyncIterator]() {
      const it = req[Symbol.asyncIterator]() as AsyncIterator<Uint8Array>;
      return { next: () => it.next() };
    },
  };
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
    const result = await store.put(bodyOf(req), {
      ...(id === undefined ? {} : { id }),
      ...(typeof sha256 === 'string' ? { sha256: sha256.trim() } : {}),
      // Node has already refused a malformed content-length (400 from the parser).
      ...(length === undefined ? {} : { size: Number(length) }),
    });
    this.#logger.info({ ns, id: result.id, sha256: result.sha256, size: result.size, seq: result.seq, created: result.created }, 'blob stored');
    sendJson(res, result.created ? 201 : 200, result);
  }

  /**
   * Answers an error. When the request body was not read to its end (a
   * refused upload), the connection is closed after the answer instead of
   * reading, maybe gigabytes, of a body nobody will store. When the client
   * is gone (an aborted upload), there is nobody to answer.
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
    if (!req.complete) res.setHeader('connection', 'close');
    sendFailure(res, err);
  }
}
