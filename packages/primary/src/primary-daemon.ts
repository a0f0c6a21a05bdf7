/**
 * The primary daemon: a Primary (WAL tailers, replication logs,
 * checkpointer, snapshot images) behind a ReplicationServer. `walwire-primary`
 * runs one; a program can embed one the same way.
 *
 * HTTP (token-protected, JSON), on the replication port:
 *   GET /v1/status               namespaces (head, generation, checkpoints) and connected replicas
 *   GET /v1/namespaces/:ns/head  {generation, seq, checksum}: the seq of the latest commit,
 *                                for read-your-writes waits on a replica
 * the blob routes of BlobRoutes (PUT/POST/GET/HEAD/DELETE /v1/namespaces/:ns/blobs[/:id]),
 * and the operations routes of PrimaryAdmin (integrity check, reset-replication, metrics).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  type AckMessage,
  InvalidOptionError,
  NamespaceUnavailableError,
  type ProtocolLimits,
  checkIntegerOption,
  describe,
  resolveProtocolLimits,
} from '@walwire/protocol';
import { DaemonSentinel, type Logger, matchRoute, sendFailure, sendJson, silentLogger } from '@walwire/runtime';
import { BlobRoutes } from './blob-routes.js';
import type { LogRecord } from './log-record.js';
import type { PrimaryNamespace } from './namespace.js';
import type { PrimaryOptions } from './options.js';
import { Primary } from './primary.js';
import { PrimaryAdmin } from './primary-admin.js';
import type { ReplicaSession, StreamableNamespace } from './replica-session.js';
import { ReplicationServer } from './replication-server.js';
import { DEFAULT_RETENTION, Retention, type RetentionOptions } from './retention.js';
import type { LogSource } from './sender.js';

export interface PrimaryDaemonOptions extends PrimaryOptions {
  /**
   * Listen address of the replication and HTTP endpoint.
   * @default '127.0.0.1'
   */
  readonly host?: string;
  /**
   * Listen port; 0 picks a free port (see `address`).
   * @default 7400
   */
  readonly port?: number;
  /** Shared bearer token replicas and HTTP clients must present. */
  readonly token: string;
  /** PEM certificate and key files; both set means wss:// and https://. */
  readonly tlsCertPath?: string;
  readonly tlsKeyPath?: string;
  /**
   * Interval between HEARTBEAT messages to each replica.
   * @default 1000
   */
  readonly heartbeatIntervalMs?: number;
  /**
   * A replica silent for this long is disconnected.
   * @default 5000
   */
  readonly heartbeatTimeoutMs?: number;
  /**
   * Time a new connection has to send HELLO.
   * @default 10000
   */
  readonly helloTimeoutMs?: number;
  /**
   * Encoded bytes per replica written to the socket but not yet flushed to
   * the kernel; the sender waits above it (memory bound per replica). A
   * large TXN frame counts the whole reused buffer it is built in (up to
   * twice its size). One message is always allowed, so a message larger
   * than this still goes.
   * @default 2097152 (2 MiB)
   */
  readonly windowBytes?: number;
  /**
   * A replica whose send window stays full this long is disconnected (stall watchdog).
   * @default 30000
   */
  readonly stallTimeoutMs?: number;
  /**
   * Page bytes a TXN or TXN_PART message aims at: smaller messages keep
   * per-message latency and memory low on slow links.
   * @default 1048576 (1 MiB)
   */
  readonly messageTargetBytes?: number;
  /**
   * Content bytes per BLOB_CHUNK (at most the protocol's maxChunkBytes).
   * @default 262144 (256 KiB)
   */
  readonly blobChunkBytes?: number;
  /**
   * Blobs streamed to one replica at once, per namespace; further blob
   * events queue (their announcements still go out in log order).
   * @default 4
   */
  readonly maxBlobsInFlight?: number;
  /**
   * Blob content bytes sent to one replica, per namespace, and not yet
   * acknowledged as written (BLOB_ACK credit). Transactions overtake at most
   * this much blob content on the connection.
   * @default 4194304 (4 MiB)
   */
  readonly blobWindowBytes?: number;
  /**
   * How long an open or read of a blob being streamed that fails with a
   * transient errno (EIO, EAGAIN, EMFILE, ENFILE, EINTR, EBUSY) is retried,
   * with doubling delays, before the replica's connection is closed with
   * WALWIRE_ERR_BLOB_READ_FAILED (it reconnects and the blob is streamed
   * again).
   * @default 2000
   */
  readonly blobReadRetryMs?: number;
  /** Wire limits; see ProtocolLimits. */
  readonly limits?: Partial<ProtocolLimits>;
  /**
   * Id sent to replicas in WELCOME.
   * @default a random id per process
   */
  readonly primaryId?: string;
  /** Log retention; see RetentionOptions (retention.ts) for each default. */
  readonly retention?: Partial<RetentionOptions>;
}

/** Wakes senders waiting for the next record of one namespace. */
class AppendSignal {
  #waiters: (() => void)[] = [];

  wait(): Promise<void> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  fire(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }
}

export class PrimaryDaemon {
  readonly primary: Primary;
  readonly server: ReplicationServer;
  readonly retention: Retention;
  readonly #logger: Logger;
  readonly #signals = new Map<string, AppendSignal>();
  readonly #startedAt = Date.now();
  /** Present while running; removed by a clean stop (see runtime/sentinel.ts). */
  #sentinel: DaemonSentinel | undefined;

  private constructor(primary: Primary, server: ReplicationServer, retention: Retention, logger: Logger) {
    this.primary = primary;
    this.server = server;
    this.retention = retention;
    this.#logger = logger;
  }

  static async start(options: PrimaryDaemonOptions): Promise<PrimaryDaemon> {
    const logger = options.logger ?? silentLogger();
    if (typeof options.token !== 'string' || options.token.length === 0) {
      throw new InvalidOptionError(`option token must be a non-empty string, received ${describe(options.token)}`);
    }
    const port = checkIntegerOption('port', options.port ?? 7400, 0, 65535);
    const host = options.host ?? '127.0.0.1';
    const heartbeatIntervalMs = checkIntegerOption('heartbeatIntervalMs', options.heartbeatIntervalMs ?? 1000, 10, 3_600_000);
    const heartbeatTimeoutMs = checkIntegerOption('heartbeatTimeoutMs', options.heartbeatTimeoutMs ?? 5000, heartbeatIntervalMs + 1, 3_600_000);
    const limits = resolveProtocolLimits(options.limits);
    let tls: { cert: Buffer; key: Buffer } | undefined;
    if ((options.tlsCertPath === undefined) !== (options.tlsKeyPath === undefined)) {
      throw new InvalidOptionError('options tlsCertPath and tlsKeyPath must be given together');
    }
    if (options.tlsCertPath !== undefined && options.tlsKeyPath !== undefined) {
      try {
        tls = { cert: readFileSync(options.tlsCertPath), key: readFileSync(options.tlsKeyPath) };
      } catch (err) {
        throw new InvalidOptionError(`options tlsCertPath/tlsKeyPath: ${(err as Error).message}`);
      }
    }
    const session = {
      limits,
      heartbeatIntervalMs,
      heartbeatTimeoutMs,
      helloTimeoutMs: checkIntegerOption('helloTimeoutMs', options.helloTimeoutMs ?? 10_000, 10, 3_600_000),
      windowBytes: checkIntegerOption('windowBytes', options.windowBytes ?? 2 * 1024 * 1024, 65536, 2 ** 34),
      stallTimeoutMs: checkIntegerOption('stallTimeoutMs', options.stallTimeoutMs ?? 30_000, 10, 3_600_000),
      snapshotChunkBytes: checkIntegerOption('snapshotChunkBytes', options.snapshotChunkBytes ?? 4 * 1024 * 1024, 4096, limits.maxChunkBytes),
      messageTargetBytes: checkIntegerOption('messageTargetBytes', options.messageTargetBytes ?? 1024 * 1024, 512, limits.maxMessageBytes),
      blobChunkBytes: checkIntegerOption('blobChunkBytes', options.blobChunkBytes ?? 256 * 1024, 512, limits.maxChunkBytes),
      maxBlobsInFlight: checkIntegerOption('maxBlobsInFlight', options.maxBlobsInFlight ?? 4, 1, 1024),
      blobWindowBytes: checkIntegerOption('blobWindowBytes', options.blobWindowBytes ?? 4 * 1024 * 1024, 512, 2 ** 34),
      blobReadRetryMs: checkIntegerOption('blobReadRetryMs', options.blobReadRetryMs ?? 2000, 0, 3_600_000),
      primaryId: options.primaryId ?? `primary-${randomBytes(6).toString('hex')}`,
    };
    const sentinel = await DaemonSentinel.acquire(options.dataDir, 'walwire-primary');
    if (sentinel.unclean) {
      logger.warn({ previous: sentinel.previous, sentinel: sentinel.path }, 'unclean shutdown detected: verifying replication logs and positions');
    }
    const primary = await Primary.start({ ...options, snapshotChunkBytes: session.snapshotChunkBytes, logger });
    // The server calls back into the daemon, which needs the server: tie the knot through a holder.
    const holder: { daemon?: PrimaryDaemon } = {};
    const server = new ReplicationServer(
      {
        host,
        port,
        token: options.token,
        ...(tls ? { tls } : {}),
        limits,
        session,
        resolve: (name) => holder.daemon?.streamable(name),
        unavailable: (name) => holder.daemon?.unavailable(name) ?? null,
        onAck: (s, ns, ack) => holder.daemon?.onAck(s, ns, ack),
      },
      logger,
    );
    const r = { ...DEFAULT_RETENTION, ...options.retention };
    const retention = new Retention(
      primary,
      {
        maxBytes: checkIntegerOption('retention.maxBytes', r.maxBytes, 0, Number.MAX_SAFE_INTEGER),
        maxAgeMs: checkIntegerOption('retention.maxAgeMs', r.maxAgeMs, 0, Number.MAX_SAFE_INTEGER),
        replicaTtlMs: checkIntegerOption('retention.replicaTtlMs', r.replicaTtlMs, 0, Number.MAX_SAFE_INTEGER),
        intervalMs: checkIntegerOption('retention.intervalMs', r.intervalMs, 10, 86_400_000),
      },
      options.dataDir,
      () =>
        server.sessions.flatMap((s) =>
          s.replicaId === null ? [] : s.namespaces.flatMap((n) => (n.mode === 'stream' ? [{ replicaId: s.replicaId!, ns: n.ns, generation: primary.head(n.ns).generation, durableSeq: n.durableSeq }] : [])),
        ),
      logger,
    );
    const d = new PrimaryDaemon(primary, server, retention, logger);
    holder.daemon = d;
    d.#sentinel = sentinel;
    if (sentinel.unclean) d.#reportRecovery();
    retention.start();
    primary.on('record', ({ ns }) => d.#signal(ns).fire());
    primary.on('generation', ({ ns }) => d.#signal(ns).fire());
    primary.on('namespace-started', ({ ns }) => server.reconnectWaiting(ns));
    server.route((req, res) => d.#request(req, res));
    const blobRoutes = new BlobRoutes(primary, logger);
    server.route((req, res) => blobRoutes.handle(req, res));
    const admin = new PrimaryAdmin(primary, server, logger);
    server.route((req, res) => admin.handle(req, res));
    try {
      await server.listen();
    } catch (err) {
      // A start that fails this way is a clean stop: nothing to verify next time.
      await primary.stop();
      await sentinel.release();
      throw err;
    }
    return d;
  }

  /** The bound address (port 0 resolved). */
  get address(): AddressInfo {
    return this.server.address!;
  }

  /**
   * Per namespace: its head, degraded flag (checkpoints failing) and the
   * replicas streaming it with their acknowledged positions and lag; then
   * every connection as the server sees it.
   */
  status(): Record<string, unknown> {
    const sessions = this.server.sessions;
    return {
      role: 'primary',
      uptimeMs: Date.now() - this.#startedAt,
      namespaces: this.primary.status().namespaces.map((n) => ({
        role: 'primary',
        ...n,
        head: n.generation === null ? null : { generation: n.generation, seq: n.headSeq, checksum: n.checksum },
        degraded: n.state !== 'running' || n.checkpoint?.degraded === true,
        replicas: sessions.flatMap((s) =>
          s.namespaces
            .filter((r) => r.ns === n.name)
            .map((r) => ({
              replica: s.replicaId,
              conn: s.id,
              mode: r.mode,
              appliedSeq: r.appliedSeq,
              durableSeq: r.durableSeq,
              lagSeqs: r.lagSeqs,
              lagBytes: r.lagBytes,
              lagMs: r.lagMs,
            })),
        ),
      })),
      replicas: sessions,
    };
  }

  async stop(): Promise<void> {
    await this.retention.stop();
    await this.server.close();
    await this.primary.stop();
    for (const s of this.#signals.values()) s.fire();
    await this.#sentinel?.release();
  }

  /**
   * After an unclean shutdown: what start-up verification did per namespace
   * (each log's tail was verified and torn records cut, the position was
   * re-established against the database by checksum).
   */
  #reportRecovery(): void {
    const namespaces = this.primary.namespaces().map((name) => {
      try {
        const ns = this.primary.namespace(name);
        return { ns: name, state: ns.state, ...ns.head(), log: ns.log.recovery };
      } catch (err) {
        return { ns: name, state: 'failed', err: (err as Error).message };
      }
    });
    this.#logger.warn({ namespaces }, 'recovered after unclean shutdown: logs verified, positions re-established');
  }

  #signal(ns: string): AppendSignal {
    let s = this.#signals.get(ns);
    if (s === undefined) this.#signals.set(ns, (s = new AppendSignal()));
    return s;
  }

  /** Why `name` is configured but not running (WALWIRE_ERR_NAMESPACE_UNAVAILABLE), or null. */
  unavailable(name: string): string | null {
    try {
      this.primary.namespace(name);
      return null;
    } catch (err) {
      return err instanceof NamespaceUnavailableError ? err.message : null;
    }
  }

  /** The streaming view of a running namespace, or undefined (unknown namespace). */
  streamable(name: string): StreamableNamespace | undefined {
    let ns: PrimaryNamespace;
    try {
      ns = this.primary.namespace(name);
    } catch {
      return undefined;
    }
    const signal = this.#signal(name);
    const log: LogSource = {
      get generation() {
        return ns.log.generation;
      },
      get pageSize() {
        return ns.log.pageSize;
      },
      headSeq: () => ns.log.head?.seq ?? 0,
      read: (from) => ns.log.read(from),
      nextAppend: () => signal.wait(),
    };
    return {
      name,
      log,
      firstSeq: () => ns.log.firstSeq,
      checksumAt: (seq) => checksumAt(ns, seq),
      openSnapshot: (resume) => ns.openSnapshot(resume),
      rebuildDamagedSnapshot: (err, damaged) => ns.rebuildDamagedSnapshot(err, damaged),
      blobSource: ns.blobs.files,
    };
  }

  /** Called for every ACK a replica sends. */
  onAck(session: ReplicaSession, ns: string, ack: AckMessage): void {
    this.#logger.trace({ replica: session.replicaId, ns, applied: ack.appliedSeq, durable: ack.durableSeq }, 'ack');
    if (session.replicaId !== null) this.retention.noteAck({ replicaId: session.replicaId, ns, generation: ack.generation, durableSeq: ack.durableSeq });
  }

  async #request(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const url = new URL(req.url ?? '/', 'http://x');
    const head = matchRoute('/v1/namespaces/:ns/head', url.pathname);
    if (req.method !== 'GET' || (url.pathname !== '/v1/status' && head === null)) return false;
    try {
      if (head) sendJson(res, 200, { ns: head['ns'], ...this.primary.head(head['ns']!) });
      else sendJson(res, 200, this.status());
    } catch (err) {
      sendFailure(res, err);
    }
    return true;
  }
}

/** The database checksum after `seq` of the current generation, or undefined if not in the log. */
async function checksumAt(ns: PrimaryNamespace, seq: number): Promise<string | undefined> {
  const log = ns.log;
  const head = log.head;
  if (head !== undefined && seq === head.seq) return head.checksum;
  if (seq === log.firstSeq - 1) return log.base?.checksum;
  if (seq < log.firstSeq || head === undefined || seq > head.seq) return undefined;
  // Blob events carry no pages: the checksum after one is the last txn's before it.
  let found: string | undefined;
  for await (const record of log.read(Math.max(log.firstSeq, seq - 256), seq) as AsyncIterable<LogRecord>) {
    if (record.kind === 'txn') found = record.txn.checksum;
  }
  return found ?? (seq - 256 < log.firstSeq ? log.base?.checksum : undefined);
}
