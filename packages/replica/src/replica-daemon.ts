/**
 * The replica daemon: a Replica (namespaces, appliers, cursors), its
 * ReplicationClient (the connection to the primary), and an HTTP endpoint
 * for status and read-your-writes waits. `walwire-replica` runs one; a
 * program can embed one the same way.
 *
 * HTTP (token-protected, JSON):
 *   GET /v1/status                               positions, connection, apply stats
 *   GET /v1/namespaces/:ns/wait?seq=N&timeoutMs=T  200 with the position once seq N is
 *        applied; 504 WALWIRE_ERR_TIMEOUT after T ms; 404 for an unknown namespace
 * and the operations routes of ReplicaAdmin (integrity check, metrics).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { InvalidOptionError, NotFoundError, TimeoutError, checkIntegerOption, describe } from '@walwire/protocol';
import { DaemonSentinel, type Logger, matchRoute, requireToken, sendFailure, sendJson, silentLogger } from '@walwire/runtime';
import type { ClientOptions } from './client-options.js';
import { ReplicationClient } from './primary-client.js';
import { Replica } from './replica.js';
import { ReplicaAdmin } from './replica-admin.js';
import type { ReplicaOptions } from './options.js';
import type { ReplicaPosition } from './replica-namespace.js';

export interface ReplicaDaemonOptions extends Omit<ReplicaOptions, 'logger'>, ClientOptions {
  /**
   * Address of the HTTP endpoint (status, wait).
   * @default '127.0.0.1'
   */
  readonly httpHost?: string;
  /**
   * Port of the HTTP endpoint; 0 picks a free port.
   * @default 7401
   */
  readonly httpPort?: number;
  readonly logger?: Logger;
}

export class ReplicaDaemon {
  readonly replica: Replica;
  readonly client: ReplicationClient;
  readonly #http: Server;
  readonly #logger: Logger;
  readonly #token: string;
  readonly #startedAt = Date.now();
  readonly #admin: ReplicaAdmin;
  /** Present while running; removed by a clean stop (see runtime/sentinel.ts). */
  #sentinel: DaemonSentinel | undefined;

  private constructor(replica: Replica, client: ReplicationClient, token: string, logger: Logger) {
    this.replica = replica;
    this.client = client;
    this.#admin = new ReplicaAdmin(replica, client, logger);
    this.#token = token;
    this.#logger = logger;
    this.#http = createServer((req, res) => void this.#request(req, res));
  }

  /** Opens the replica, starts replicating, and listens for HTTP. */
  static async start(options: ReplicaDaemonOptions): Promise<ReplicaDaemon> {
    const logger = options.logger ?? silentLogger();
    const httpPort = checkIntegerOption('httpPort', options.httpPort ?? 7401, 0, 65535);
    const httpHost = options.httpHost ?? '127.0.0.1';
    if (typeof httpHost !== 'string' || httpHost === '') throw new InvalidOptionError(`option httpHost must be a host name or address, received ${describe(httpHost)}`);
    const replica = await Replica.open({ ...options, logger });
    const sentinel = await DaemonSentinel.acquire(replica.options.dataDir, 'walwire-replica');
    if (sentinel.unclean) {
      logger.warn({ previous: sentinel.previous, sentinel: sentinel.path }, 'unclean shutdown detected: verifying databases, journals and cursors');
    }
    const client = new ReplicationClient(replica, options, logger);
    const daemon = new ReplicaDaemon(replica, client, options.token, logger);
    daemon.#sentinel = sentinel;
    try {
      await new Promise<void>((resolve, reject) => {
        daemon.#http.once('error', reject);
        daemon.#http.listen(httpPort, httpHost, () => resolve());
      });
      await client.start();
    } catch (err) {
      await daemon.stop();
      throw err;
    }
    if (sentinel.unclean) await daemon.#reportRecovery();
    const address = daemon.httpAddress;
    logger.info({ host: address.address, port: address.port, primary: options.url, namespaces: client.options.namespaces }, 'replica http listening');
    return daemon;
  }

  get httpAddress(): AddressInfo {
    return this.#http.address() as AddressInfo;
  }

  /**
   * Resolves once `ns` has applied seq `seq` (of `generation`, when given);
   * rejects with WALWIRE_ERR_TIMEOUT after `timeoutMs`.
   */
  async waitForSeq(ns: string, seq: number, options: { timeoutMs?: number; generation?: string } = {}): Promise<ReplicaPosition> {
    const timeoutMs = options.timeoutMs ?? 5000;
    const namespace = await this.replica.namespace(ns);
    const reached = (): boolean => {
      const p = namespace.position;
      return p.appliedSeq >= seq && (options.generation === undefined || p.generation === options.generation);
    };
    if (reached()) return namespace.position;
    return new Promise<ReplicaPosition>((resolve, reject) => {
      const onApplied = (): void => {
        if (!reached()) return;
        cleanup();
        resolve(namespace.position);
      };
      const timer = setTimeout(() => {
        cleanup();
        const p = namespace.position;
        reject(new TimeoutError(`wait for seq ${seq} of ${ns} timed out after ${timeoutMs} ms (applied seq ${p.appliedSeq}, generation ${String(p.generation)}, connection ${this.client.status.state})`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        namespace.off('applied', onApplied);
      };
      namespace.on('applied', onApplied);
    });
  }

  /** Everything an operator needs at a glance. */
  async status(): Promise<Record<string, unknown>> {
    const namespaces = [];
    const client = this.client.status;
    for (const name of this.replica.namespaceNames) {
      const ns = await this.replica.namespace(name);
      const st = ns.status;
      const gapSeq = ns.durability.gapSeq;
      namespaces.push({
        role: 'replica',
        ...st,
        generation: st.position.generation,
        appliedSeq: st.position.appliedSeq,
        durableSeq: st.position.durableSeq,
        // The replica cannot know the primary's head; the primary's status
        // has the lag in seqs, bytes and ms. Here: what is received and not
        // yet applied, and how long ago the last batch committed.
        lag: { queuedTxns: st.queuedTxns, queuedBytes: st.queuedBytes, lastApplyAgeMs: st.lastApply ? Date.now() - st.lastApply.at : null },
        degraded: st.state !== 'ready' || !client.connected,
        diverged: st.diverged !== null,
        gap: gapSeq !== null,
        gapSeq,
        bootstrap: client.bootstrap.find((b) => b.ns === name) ?? null,
      });
    }
    return { role: 'replica', uptimeMs: Date.now() - this.#startedAt, connection: this.client.status, namespaces };
  }

  async stop(): Promise<void> {
    await this.client.stop();
    this.#http.closeAllConnections?.();
    await new Promise<void>((resolve) => this.#http.close(() => resolve()));
    await this.replica.close();
    await this.#sentinel?.release();
  }

  /**
   * After an unclean shutdown: what opening each namespace did (a hot
   * journal rolled back, the database checksum verified against the cursor,
   * and the decision taken).
   */
  async #reportRecovery(): Promise<void> {
    const namespaces = [];
    for (const name of this.replica.namespaceNames) {
      const st = (await this.replica.namespace(name)).status;
      namespaces.push({ ns: name, state: st.state, ...st.position, ...st.startup });
    }
    this.#logger.warn({ namespaces }, 'recovered after unclean shutdown: journals rolled back, databases verified against their cursors');
  }

  async #request(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      if (!requireToken(req, res, this.#token)) return;
      if (await this.#admin.handle(req, res)) return;
      const url = new URL(req.url ?? '/', 'http://x');
      if (req.method === 'GET' && url.pathname === '/v1/status') return sendJson(res, 200, await this.status());
      const wait = matchRoute('/v1/namespaces/:ns/wait', url.pathname);
      if (req.method === 'GET' && wait) {
        const seq = Number(url.searchParams.get('seq'));
        const timeoutMs = Number(url.searchParams.get('timeoutMs') ?? 5000);
        checkIntegerOption('seq', seq, 0, Number.MAX_SAFE_INTEGER);
        checkIntegerOption('timeoutMs', timeoutMs, 0, 3_600_000);
        const generation = url.searchParams.get('generation') ?? undefined;
        return sendJson(res, 200, { ns: wait['ns'], ...(await this.waitForSeq(wait['ns']!, seq, { timeoutMs, ...(generation ? { generation } : {}) })) });
      }
      throw new NotFoundError(`no route for ${req.method} ${url.pathname}`);
    } catch (err) {
      if (!(err instanceof NotFoundError)) this.#logger.debug({ err: (err as Error).message, url: req.url }, 'http request failed');
      if (err instanceof NotFoundError) sendJson(res, 404, { code: err.code, message: err.message });
      else sendFailure(res, err);
    }
  }
}
