/**
 * The primary's network endpoint: one HTTP(S) server whose WebSocket
 * upgrade at /v1/replicate carries replication (RFC 6455 §4). The bearer
 * token is checked on the upgrade request itself, in constant time, and a
 * wrong or missing token is answered `401` before any upgrade, so an
 * unauthenticated peer never reaches the protocol.
 *
 * Other HTTP routes (status, admin, blobs) attach through `route()`; every
 * HTTP request is authenticated before any route sees it.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { WebSocketServer } from 'ws';
import { type AckMessage, type ProtocolLimits, UnauthorizedError } from '@walwire/protocol';
import { type Logger, answerClientError, bearerToken, tokenMatches } from '@walwire/runtime';
import { ReplicaSession, type SessionOptions, type SessionStatus, type StreamableNamespace } from './replica-session.js';

export const REPLICATION_PATH = '/v1/replicate';

export interface ReplicationServerOptions {
  readonly host: string;
  readonly port: number;
  readonly token: string;
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer };
  readonly limits: ProtocolLimits;
  readonly session: SessionOptions;
  readonly resolve: (name: string) => StreamableNamespace | undefined;
  /** Why a configured namespace is not running yet, or null (see ReplicaSession). */
  readonly unavailable: (name: string) => string | null;
  readonly onAck: (session: ReplicaSession, ns: string, ack: AckMessage) => void;
}

export type HttpHandler = (req: IncomingMessage, res: ServerResponse) => boolean | Promise<boolean>;

/** Writes a JSON error body with a stable code. */
export function sendJsonError(res: ServerResponse, status: number, code: string, message: string): void {
  const body = JSON.stringify({ code, message });
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

export class ReplicationServer {
  readonly #options: ReplicationServerOptions;
  readonly #logger: Logger;
  readonly #http: Server;
  readonly #wss: WebSocketServer;
  readonly #sessions = new Set<ReplicaSession>();
  readonly #routes: HttpHandler[] = [];
  #nextId = 1;

  constructor(options: ReplicationServerOptions, logger: Logger) {
    this.#options = options;
    this.#logger = logger.child({ component: 'server' });
    const handler = (req: IncomingMessage, res: ServerResponse): void => void this.#request(req, res);
    this.#http = options.tls ? createHttpsServer({ cert: options.tls.cert, key: options.tls.key }, handler) : createHttpServer(handler);
    this.#wss = new WebSocketServer({ noServer: true, maxPayload: options.limits.maxMessageBytes, perMessageDeflate: false });
    this.#http.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => this.#upgrade(req, socket, head));
    // Requests Node's parser refuses (e.g. an upload cut short) get a {code, message} answer too.
    this.#http.on('clientError', (err: Error & { code?: string }, socket) => answerClientError(err, socket));
  }

  /** Adds an HTTP handler; it returns true when it answered the request. */
  route(handler: HttpHandler): void {
    this.#routes.push(handler);
  }

  /** Checks the bearer token of an HTTP request. */
  authorized(req: IncomingMessage): boolean {
    return tokenMatches(bearerToken(req.headers.authorization), this.#options.token);
  }

  async listen(): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.#http.once('error', reject);
      this.#http.listen(this.#options.port, this.#options.host, () => {
        this.#http.off('error', reject);
        resolve();
      });
    });
    const address = this.#http.address() as AddressInfo;
    this.#logger.info({ host: address.address, port: address.port, tls: this.#options.tls !== undefined }, 'listening');
    return address;
  }

  get address(): AddressInfo | null {
    return this.#http.address() as AddressInfo | null;
  }

  get sessions(): readonly SessionStatus[] {
    return [...this.#sessions].map((s) => s.status);
  }

  /**
   * A namespace that was not running now runs: closes the sessions of
   * replicas that asked for it meanwhile, so they reconnect and stream it.
   */
  reconnectWaiting(ns: string): void {
    for (const s of this.#sessions) if (s.waitsFor(ns)) s.close(1001, `namespace ${ns} is running now; reconnect to stream it`);
  }

  /** Closes every session of one namespace's replicas (e.g. after reset-replication). */
  disconnectNamespace(ns: string, reason: string): void {
    for (const s of this.#sessions) if (s.status.namespaces.some((n) => n.ns === ns)) s.close(1001, reason);
  }

  async close(): Promise<void> {
    for (const s of this.#sessions) s.close();
    this.#wss.close();
    this.#http.closeAllConnections?.();
    await new Promise<void>((resolve) => this.#http.close(() => resolve()));
  }

  #upgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname !== REPLICATION_PATH) {
      this.#refuse(socket, 404, 'WALWIRE_ERR_NOT_FOUND', `no WebSocket endpoint at ${url.pathname}; replication is at ${REPLICATION_PATH}`);
      return;
    }
    if (!this.authorized(req)) {
      const err = new UnauthorizedError('missing or wrong bearer token');
      this.#logger.warn({ remote: req.socket.remoteAddress }, 'refused replication upgrade: bad token');
      this.#refuse(socket, 401, err.code, err.message);
      return;
    }
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      const id = this.#nextId++;
      const remote = `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? '?'}`;
      const session = new ReplicaSession({
        id,
        ws,
        socket,
        remote,
        session: this.#options.session,
        logger: this.#logger.child({ conn: id, remote }),
        resolve: this.#options.resolve,
        unavailable: this.#options.unavailable,
        onAck: this.#options.onAck,
      });
      this.#sessions.add(session);
      ws.on('close', () => this.#sessions.delete(session));
    });
  }

  #refuse(socket: Socket, status: number, code: string, message: string): void {
    const body = JSON.stringify({ code, message });
    const reason = status === 401 ? 'Unauthorized' : 'Not Found';
    socket.end(
      `HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${status === 401 ? 'WWW-Authenticate: Bearer\r\n' : ''}\r\n${body}`,
    );
  }

  async #request(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      // Authenticate before routing, so an unauthenticated caller learns nothing, not even which routes exist.
      if (!this.authorized(req)) {
        res.setHeader('www-authenticate', 'Bearer');
        sendJsonError(res, 401, 'WALWIRE_ERR_UNAUTHORIZED', 'missing or wrong bearer token');
        return;
      }
      for (const route of this.#routes) if (await route(req, res)) return;
      sendJsonError(res, 404, 'WALWIRE_ERR_NOT_FOUND', `no route for ${req.method} ${req.url}`);
    } catch (err) {
      this.#logger.error({ err: (err as Error).message, url: req.url }, 'request failed');
      if (!res.headersSent) sendJsonError(res, 500, (err as { code?: string }).code ?? 'WALWIRE_ERR_INTERNAL', (err as Error).message);
      else res.destroy();
    }
  }
}
