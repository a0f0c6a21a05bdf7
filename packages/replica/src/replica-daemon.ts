/**
 * The replica daemon: a Replica (namespaces, appliers, cursors), its
 * ReplicationClient (the connection to the primary), and an HTTP endpoint
 * for status and read-your-writes waits. `walwire-replica` runs one; a
 * program can embed one the same way.
 *
 * HTTP (token-protected, JSON):
 *   GET /v1/status                               positions, connection, apply stats
 *   GET /v1/namespaces/:ns/wait?seq=N&timeoutMs=T[&durable=1]  200 with the position once seq N is
 *        applied (durable: every blob event up to N saved); 504 WALWIRE_ERR_TIMEOUT after T ms;
 *        404 for an unknown namespace
 *   GET|HEAD /v1/namespaces/:ns/blobs/:id        a durable blob, read-only (Range supported); 404 until durable
 *   GET /v1/namespaces/:ns/blobs                 {blobs: [{id, sha256, size}], count, bytes}
 * and the operations routes of ReplicaAdmin (integrity check, metrics).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { existsSync, readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { InvalidOptionError, NamespaceExistsError, NotFoundError, TimeoutError, UnknownNamespaceError, assertNamespace, checkIntegerOption, describe } from '@walwire/protocol';
import { DaemonSentinel, type Logger, matchRoute, serveBlob, readJsonBody, writeFileDurable, requireToken, sendFailure, sendJson, silentLogger } from '@walwire/runtime';
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
  #client: ReplicationClient;
  #clientOptions: ReplicaDaemonOptions;
  /** Serializes admin add/remove (each replaces the client). */
  #adminChain: Promise<unknown> = Promise.resolve();
  readonly #http: Server;
  readonly #logger: Logger;
  readonly #token: string;
  readonly #startedAt = Date.now();
  readonly #admin: ReplicaAdmin;
  /** Present while running; removed by a clean stop (see runtime/sentinel.ts). */
  #sentinel: DaemonSentinel | undefined;

  private constructor(replica: Replica, client: ReplicationClient, options: ReplicaDaemonOptions, logger: Logger) {
    this.replica = replica;
    this.#client = client;
    this.#clientOptions = options;
    const token = options.token;
    this.#admin = new ReplicaAdmin(replica, () => this.#client, logger);
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
    const runtime = readRuntimeNamespaces(replica.options.dataDir);
    const namespaces = [...new Set([...options.namespaces.filter((n) => !runtime.removed.includes(n)), ...runtime.added])];
    const client = new ReplicationClient(replica, { ...options, namespaces }, logger);
    const daemon = new ReplicaDaemon(replica, client, { ...options, namespaces }, logger);
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

  /** The connection to the primary (replaced when namespaces are added or removed). */
  get client(): ReplicationClient {
    return this.#client;
  }

  /**
   * Starts replicating `name` (admin API add): opens (or creates) its
   * database and reconnects with it in HELLO, so it bootstraps or resumes
   * from its cursor. The other namespaces resume from their cursors after
   * that one reconnect. Remembered in `<dataDir>/namespaces.json`.
   */
  addNamespace(name: string): Promise<void> {
    return this.#serialize(async () => {
      assertNamespace(name);
      if (this.#clientOptions.namespaces.includes(name)) throw new NamespaceExistsError(`namespace ${name} is already replicated here`);
      await this.replica.openNamespace(name);
      await this.#replaceClient([...this.#clientOptions.namespaces, name]);
      await saveRuntimeNamespaces(this.replica.options.dataDir, { add: name });
      this.#logger.info({ ns: name }, 'namespace added');
    });
  }

  /**
   * Stops replicating `name` (admin API remove): reconnects without it and
   * closes it. Its files stay in `<dataDir>/<name>` (adding it again resumes
   * from its cursor); delete them by hand once no longer wanted.
   */
  removeNamespace(name: string): Promise<void> {
    return this.#serialize(async () => {
      if (!this.#clientOptions.namespaces.includes(name)) throw new UnknownNamespaceError(`namespace ${JSON.stringify(name)} is not replicated here`);
      await this.#replaceClient(this.#clientOptions.namespaces.filter((n) => n !== name));
      await this.replica.removeNamespace(name).catch(() => undefined);
      await saveRuntimeNamespaces(this.replica.options.dataDir, { remove: name });
      this.#logger.info({ ns: name }, 'namespace removed');
    });
  }

  #serialize<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#adminChain.then(work, work);
    this.#adminChain = run.catch(() => undefined);
    return run;
  }

  /** Stops the connection and starts a new one for `namespaces` (none: stays disconnected). */
  async #replaceClient(namespaces: readonly string[]): Promise<void> {
    await this.#client.stop();
    const options = { ...this.#clientOptions, namespaces, replicaId: this.#client.status.replicaId };
    this.#clientOptions = options;
    if (namespaces.length === 0) return;
    this.#client = new ReplicationClient(this.replica, options, this.#logger);
    await this.#client.start();
  }

  get httpAddress(): AddressInfo {
    return this.#http.address() as AddressInfo;
  }

  /**
   * Resolves once `ns` has applied seq `seq` (of `generation`, when given);
   * with `durable`, once its durable seq reached it (every blob event up to
   * `seq` saved). Rejects with WALWIRE_ERR_TIMEOUT after `timeoutMs`.
   */
  async waitForSeq(ns: string, seq: number, options: { timeoutMs?: number; generation?: string; durable?: boolean } = {}): Promise<ReplicaPosition> {
    const timeoutMs = options.timeoutMs ?? 5000;
    const namespace = await this.replica.namespace(ns);
    const reached = (): boolean => {
      const p = namespace.position;
      return (options.durable === true ? p.durableSeq : p.appliedSeq) >= seq && (options.generation === undefined || p.generation === options.generation);
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
        reject(new TimeoutError(`wait for ${options.durable === true ? 'durable ' : ''}seq ${seq} of ${ns} timed out after ${timeoutMs} ms (applied seq ${p.appliedSeq}, durable seq ${p.durableSeq}, generation ${String(p.generation)}, connection ${this.client.status.state})`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        namespace.off('applied', onApplied);
        namespace.off('durable', onApplied);
      };
      namespace.on('applied', onApplied);
      namespace.on('durable', onApplied);
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
        // What keeps the durable seq below the applied seq: blob events not
        // yet saved, and the re-stream barrier (lifted by STREAM_MARK).
        heldSeqs: ns.durability.heldSeqs,
        barrierSeq: ns.durability.barrierSeq,
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
      if (req.method === 'POST' && new URL(req.url ?? '/', 'http://x').pathname === '/v1/namespaces') {
        const body = await readJsonBody(req, 4096);
        const name = body['name'];
        if (typeof name !== 'string') throw new InvalidOptionError(`field name must be a namespace name, received ${describe(name)}`);
        await this.addNamespace(name);
        return sendJson(res, 201, { ns: name, ...(await this.replica.namespace(name)).position });
      }
      const del = matchRoute('/v1/namespaces/:ns', new URL(req.url ?? '/', 'http://x').pathname);
      if (req.method === 'DELETE' && del) {
        await this.removeNamespace(del['ns']!);
        return sendJson(res, 200, { ns: del['ns'], removed: true });
      }
      const url = new URL(req.url ?? '/', 'http://x');
      if (req.method === 'GET' && url.pathname === '/v1/status') return sendJson(res, 200, await this.status());
      // Blobs are served read-only, and only once durable: the directory
      // index lists a blob after its rename and directory fsync.
      const blob = matchRoute('/v1/namespaces/:ns/blobs/:id', url.pathname);
      if (blob && (req.method === 'GET' || req.method === 'HEAD')) {
        return await serveBlob(req, res, (await this.replica.namespace(blob['ns']!)).blobs.files, blob['id']!);
      }
      const list = matchRoute('/v1/namespaces/:ns/blobs', url.pathname);
      if (list && req.method === 'GET') {
        const files = (await this.replica.namespace(list['ns']!)).blobs.files;
        return sendJson(res, 200, { blobs: files.list().map(({ id, sha256, size }) => ({ id, sha256, size })), count: files.count, bytes: files.bytes });
      }
      const wait = matchRoute('/v1/namespaces/:ns/wait', url.pathname);
      if (req.method === 'GET' && wait) {
        const seq = Number(url.searchParams.get('seq'));
        const timeoutMs = Number(url.searchParams.get('timeoutMs') ?? 5000);
        checkIntegerOption('seq', seq, 0, Number.MAX_SAFE_INTEGER);
        checkIntegerOption('timeoutMs', timeoutMs, 0, 3_600_000);
        const generation = url.searchParams.get('generation') ?? undefined;
        const durable = url.searchParams.get('durable') === '1' || url.searchParams.get('durable') === 'true';
        return sendJson(res, 200, { ns: wait['ns'], ...(await this.waitForSeq(wait['ns']!, seq, { timeoutMs, durable, ...(generation ? { generation } : {}) })) });
      }
      throw new NotFoundError(`no route for ${req.method} ${url.pathname}`);
    } catch (err) {
      if (!(err instanceof NotFoundError)) this.#logger.debug({ err: (err as Error).message, url: req.url }, 'http request failed');
      if (err instanceof NotFoundError) sendJson(res, 404, { code: err.code, message: err.message });
      else sendFailure(res, err);
    }
  }
}

/**
 * `<dataDir>/namespaces.json`: namespaces added and removed through the
 * admin API, applied over the `namespaces` option at every start.
 */
interface RuntimeNamespaces {
  readonly added: string[];
  readonly removed: string[];
}

function readRuntimeNamespaces(dataDir: string): RuntimeNamespaces {
  const path = join(dataDir, 'namespaces.json');
  if (!existsSync(path)) return { added: [], removed: [] };
  const parsed = JSON.parse(readFileSync(path, 'utf8')) as Partial<RuntimeNamespaces>;
  return { added: parsed.added ?? [], removed: parsed.removed ?? [] };
}

async function saveRuntimeNamespaces(dataDir: string, change: { add?: string; remove?: string }): Promise<void> {
  const current = readRuntimeNamespaces(dataDir);
  let added = current.added.filter((n) => n !== change.remove);
  let removed = current.removed.filter((n) => n !== change.add);
  if (change.add !== undefined && !added.includes(change.add)) added = [...added, change.add];
  if (change.remove !== undefined && !removed.includes(change.remove)) removed = [...removed, change.remove];
  await writeFileDurable(join(dataDir, 'namespaces.json'), `${JSON.stringify({ added, removed }, null, 2)}\n`);
}
