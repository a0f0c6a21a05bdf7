/**
 * The replica's connection to its primary: connect, handshake, receive,
 * apply, acknowledge, and reconnect — forever, until stopped.
 *
 * One connection at a time. Its life:
 *   1. WebSocket upgrade with `Authorization: Bearer <token>` (401 → retry later).
 *   2. HELLO with every namespace's position (applied and durable seq, checksum).
 *   3. WELCOME: per namespace, stream from the durable seq + 1, or snapshot.
 *   4. Frames go through the Receiver state machine (receiver.ts); whole
 *      transactions go to ReplicaNamespace.apply, which commits them in order.
 *   5. ACKs report applied and durable seqs, coalesced per namespace.
 *
 * Back-pressure (invariant 3): page bytes handed to the appliers and not yet
 * committed are bounded by maxInFlightBytes; above it the socket is paused,
 * so TCP flow control pushes back on the primary. A paused connection that
 * commits nothing for stallTimeoutMs is torn down (stall watchdog).
 *
 * Liveness: HEARTBEAT every heartbeatIntervalMs; silence for
 * heartbeatTimeoutMs ends the connection. Reconnects back off exponentially
 * with full jitter, and wait until every apply of the old connection has
 * settled, so the next HELLO reports the true position and re-delivery
 * starts exactly after it (idempotent: nothing at or below appliedSeq is
 * applied twice).
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import {
  type BlobBeginMessage,
  type BlobChunkMessage,
  type BlobDeleteMessage,
  type BlobEndMessage,
  type BlobGoneMessage,
  BlobSaveFailedError,
  CloseCode,
  ClosedError,
  DivergedError,
  type ErrorMessage,
  MIN_PROTOCOL_VERSION,
  type Message,
  MessageType,
  PROTOCOL_VERSION,
  ProtocolError,
  TimeoutError,
  UnauthorizedError,
  UnexpectedMessageError,
  WalwireError,
  closeCodeFor,
  encodeMessage,
} from '@walwire/protocol';
import { Backoff, type Logger, silentLogger, writeFileDurable } from '@walwire/runtime';
import { type ClientOptions, type ResolvedClientOptions, resolveClientOptions } from './client-options.js';
import { Receiver, type ReceiverSink } from './receiver.js';
import type { Replica } from './replica.js';
import type { ReplicaNamespace } from './replica-namespace.js';
import { type BootstrapProgress, SnapshotInstaller } from './snapshot-installer.js';

export type ClientState = 'idle' | 'connecting' | 'streaming' | 'waiting' | 'stopped';

export interface ClientStatus {
  readonly state: ClientState;
  readonly url: string;
  readonly replicaId: string;
  readonly connected: boolean;
  /** Connections opened since start, minus the first. */
  readonly reconnects: number;
  readonly lastError: { readonly code: string; readonly message: string; readonly at: number } | null;
  readonly inFlightBytes: number;
  readonly paused: boolean;
  readonly framesReceived: number;
  readonly bytesReceived: number;
  /** Bootstraps under way. */
  readonly bootstrap: readonly BootstrapProgress[];
}

export interface ClientEvents {
  connected: [{ readonly version: number; readonly primaryId: string }];
  disconnected: [{ readonly code: number; readonly reason: string }];
  error: [WalwireError];
  /** Snapshot transfer progress (a bootstrap is under way). */
  bootstrap: [BootstrapProgress];
}

/** State of one WebSocket connection; a reconnect makes a new one. */
class Connection {
  readonly receiver: Receiver;
  readonly pending = new Set<Promise<unknown>>();
  readonly ackTimers = new Map<string, NodeJS.Timeout>();
  /**
   * Per namespace, the snapshot install in progress: transactions that follow
   * SNAPSHOT_END must not reach the applier before the image is installed.
   */
  readonly gates = new Map<string, { readonly done: Promise<void>; readonly open: () => void }>();
  readonly timers: NodeJS.Timeout[] = [];
  lastReceivedAt = Date.now();
  lastSentAt = 0;
  lastProgressAt = Date.now();
  inFlightBytes = 0;
  /** Snapshot chunks received and not yet staged durably. */
  pendingChunks = 0;
  /** Namespaces this connection already asked a snapshot for (one request each). */
  readonly snapshotRequested = new Set<string>();
  paused = false;
  welcomed = false;
  /** Pending reconnect after a failed blob save. */
  blobRetry: NodeJS.Timeout | null = null;
  closing = false;

  constructor(
    readonly ws: WebSocket,
    readonly id: number,
    receiver: (conn: Connection) => Receiver,
  ) {
    this.receiver = receiver(this);
  }
}

export class ReplicationClient extends EventEmitter<ClientEvents> {
  readonly options: ResolvedClientOptions;
  readonly #replica: Replica;
  readonly #logger: Logger;
  readonly #backoff: Backoff;
  /** Outlives connections: a bootstrap resumes from what it staged. */
  readonly #snapshots: SnapshotInstaller;
  #replicaId = '';
  #state: ClientState = 'idle';
  #conn: Connection | null = null;
  #connections = 0;
  #retryTimer: NodeJS.Timeout | null = null;
  #lastError: ClientStatus['lastError'] = null;
  #frames = 0;
  #bytes = 0;
  #stopped: Promise<void> | null = null;
  #onDurable = ({ ns }: { readonly ns: string }): void => this.#scheduleAck(ns);
  /** Namespaces whose blob writer's gap events this client follows. */
  readonly #watched = new WeakSet<ReplicaNamespace>();

  constructor(replica: Replica, options: ClientOptions, logger?: Logger) {
    super();
    this.options = resolveClientOptions(options);
    this.#replica = replica;
    this.#logger = (logger ?? silentLogger()).child({ component: 'client' });
    this.#backoff = new Backoff(this.options.reconnectBaseMs, this.options.reconnectMaxMs);
    this.#snapshots = new SnapshotInstaller(replica, this.#logger, (p) => this.emit('bootstrap', p));
  }

  get status(): ClientStatus {
    const c = this.#conn;
    return {
      state: this.#state,
      url: this.options.url,
      replicaId: this.#replicaId,
      connected: c?.welcomed === true,
      reconnects: Math.max(0, this.#connections - 1),
      lastError: this.#lastError,
      inFlightBytes: c?.inFlightBytes ?? 0,
      paused: c?.paused ?? false,
      framesReceived: this.#frames,
      bytesReceived: this.#bytes,
      bootstrap: this.#snapshots.progress,
    };
  }

  /** Opens the namespaces and starts the connect loop. */
  async start(): Promise<void> {
    if (this.#state !== 'idle') return;
    this.#replicaId = this.options.replicaId ?? (await this.#persistentReplicaId());
    for (const ns of this.options.namespaces) await this.#replica.openNamespace(ns);
    this.#replica.on('durable', this.#onDurable);
    this.#connect();
  }

  /** Closes the connection and stops reconnecting; resolves when in-flight applies settle. */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      this.#state = 'stopped';
      if (this.#retryTimer) clearTimeout(this.#retryTimer);
      this.#replica.off('durable', this.#onDurable);
      const c = this.#conn;
      if (c) {
        this.#close(c, CloseCode.GOING_AWAY, 'replica shutting down');
        await Promise.allSettled(c.pending);
      }
    })();
    return this.#stopped;
  }

  async #persistentReplicaId(): Promise<string> {
    const file = join(this.#replica.options.dataDir, 'replica-id');
    if (existsSync(file)) {
      const id = readFileSync(file, 'utf8').trim();
      if (id) return id;
    }
    const id = `replica-${randomBytes(8).toString('hex')}`;
    await writeFileDurable(file, `${id}\n`);
    return id;
  }

  #connect(): void {
    if (this.#state === 'stopped') return;
    this.#state = 'connecting';
    const o = this.options;
    const ws = new WebSocket(o.url, {
      headers: { authorization: `Bearer ${o.token}` },
      maxPayload: o.limits.maxMessageBytes,
      handshakeTimeout: o.handshakeTimeoutMs,
      perMessageDeflate: false,
      ...(o.tlsCa ? { ca: o.tlsCa } : {}),
    });
    ws.binaryType = 'nodebuffer';
    const id = ++this.#connections;
    const log = this.#logger.child({ conn: id });
    const conn = new Connection(
      ws,
      id,
      (c) => new Receiver({ limits: o.limits, sink: this.#sinkFor(c, log), namespaces: o.namespaces, maxTxnBytes: o.maxTxnBytes }),
    );
    this.#conn = conn;

    ws.on('unexpected-response', (_req, res) => {
      const err =
        res.statusCode === 401
          ? new UnauthorizedError(`primary at ${o.url} refused the token (HTTP 401)`)
          : new UnexpectedMessageError(`primary at ${o.url} answered the upgrade with HTTP ${res.statusCode}`);
      this.#fail(conn, err, log);
      ws.terminate();
    });
    // Liveness counts bytes, not whole messages: a multi-MiB message over a
    // slow link may take longer than the heartbeat timeout to complete.
    ws.on('upgrade', (res) => res.socket.on('data', () => (conn.lastReceivedAt = Date.now())));
    ws.on('open', () => {
      log.info({ url: o.url }, 'connected; sending HELLO');
      void this.#hello(conn);
      conn.timers.push(
        setTimeout(() => {
          if (!conn.welcomed) this.#abort(conn, new TimeoutError(`no WELCOME within handshakeTimeoutMs ${o.handshakeTimeoutMs}`), log);
        }, o.handshakeTimeoutMs),
        setInterval(() => this.#tick(conn, log), Math.min(o.heartbeatIntervalMs, 250)),
      );
    });
    ws.on('message', (data: Buffer, isBinary: boolean) => this.#onFrame(conn, data, isBinary, log));
    ws.on('error', (err) => {
      if (!conn.closing) log.warn({ err: err.message }, 'connection error');
      this.#recordError(new ClosedError(`connection to ${o.url} failed: ${err.message}`));
    });
    ws.on('close', (code, reason) => void this.#onClose(conn, code, reason.toString(), log));
  }

  async #hello(conn: Connection): Promise<void> {
    const positions = (await this.#replica.positions()).filter((p) => this.options.namespaces.includes(p.ns));
    this.#send(conn, {
      type: MessageType.HELLO,
      minVersion: MIN_PROTOCOL_VERSION,
      maxVersion: PROTOCOL_VERSION,
      replicaId: this.#replicaId,
      namespaces: positions,
    });
  }

  #sinkFor(conn: Connection, log: Logger): ReceiverSink {
    return {
      welcome: (m) => {
        conn.welcomed = true;
        this.#state = 'streaming';
        this.#backoff.reset();
        for (const n of m.namespaces) {
          const opened = this.#replica.opened(n.ns);
          if (opened !== undefined) {
            this.#watchBlobs(opened, log);
            opened.blobs.startConnection();
            // What the last connection had in flight is void: the durable
            // cursor waits for this stream's STREAM_MARK (DurabilityTracker).
            if (n.mode === 'stream') opened.durability.startStream();
          }
          if (n.mode === 'snapshot') {
            log.info({ ns: n.ns, generation: n.generation, reason: n.reason }, 'primary requires a snapshot');
            this.#track(conn, 0, this.#requestSnapshot(conn, n.ns, n.reason), n.ns, log);
          } else {
            // A copy found diverged at start-up cannot take the stream: ask for a snapshot now.
            this.#namespace(n.ns).then(
              (ns) => {
                if (ns.state !== 'diverged') return;
                log.warn({ ns: n.ns }, 'namespace is diverged; requesting a snapshot');
                this.#track(conn, 0, this.#requestSnapshot(conn, n.ns, `diverged: ${ns.status.diverged?.reason ?? 'checksum mismatch'}`), n.ns, log);
              },
              (err: unknown) => log.warn({ ns: n.ns, err: (err as Error).message }, 'namespace not open; not streaming it'),
            );
          }
        }
        log.info({ version: m.version, primary: m.primaryId }, 'handshake complete');
        this.emit('connected', { version: m.version, primaryId: m.primaryId });
      },
      txns: (ns, generation, txns, bytes) => {
        // Promise reactions run in registration order, so batches queued behind
        // a gate still reach the applier in seq order.
        const gate = conn.gates.get(ns);
        const apply = (): Promise<unknown> => this.#namespace(ns).then((n) => n.apply(generation, txns));
        // Behind a gate, the blob events of this stream wait too, and they
        // are dropped if the connection has closed by the time the gate
        // opens (#blob). So are its transactions: the install reset the
        // durable cursor's tracker, and nothing else would hold the cursor
        // below a blob event that never ran. The next connection resumes
        // from the durable seq and sends both again.
        const work = gate === undefined ? apply() : gate.done.then(() => (conn.closing ? undefined : apply()));
        this.#track(conn, bytes, work, ns, log);
      },
      snapshotBegin: (m) => {
        // Blob streams of the stream this snapshot replaces will not finish.
        this.#replica.opened(m.ns)?.blobs.abortAll();
        let open = (): void => {};
        const done = new Promise<void>((resolve) => (open = resolve));
        conn.gates.get(m.ns)?.open();
        conn.gates.set(m.ns, { done, open });
        this.#track(conn, 0, this.#snapshots.begin(m), m.ns, log);
      },
      snapshotChunk: (m) => {
        // At most one chunk is held in memory beyond what is staged, so a
        // crash costs at most that chunk again when the bootstrap resumes.
        log.debug({ ns: m.ns, index: m.index, bytes: m.data.length }, 'snapshot chunk received');
        conn.pendingChunks++;
        const staged = this.#snapshots.chunk(m).finally(() => {
          conn.pendingChunks--;
          this.#maybeResume(conn);
        });
        this.#track(conn, m.data.length, staged, m.ns, log);
      },
      snapshotEnd: (ns, generation, seq) => {
        if (this.#replica.opened(ns)?.blobs.bootstrapFailed(generation, seq) === true) {
          // The image stays staged; the next connection resumes it and copies the blobs again.
          this.#abort(conn, new BlobSaveFailedError(`bootstrap of ${ns} at seq ${seq}: a blob was not saved; the snapshot is installed once a re-stream saves every one`), log, CloseCode.GOING_AWAY);
          return;
        }
        const gate = conn.gates.get(ns);
        // Blobs the snapshot does not hold are removed first, so that the
        // installed position (and a durable wait on it) never shows them.
        // A crash between the two leaves the old database with fewer blobs,
        // all of them deleted on the primary; the bootstrap runs again.
        const pruned = this.#replica.opened(ns)?.blobs.pruneAfterBootstrap(generation, seq) ?? Promise.resolve(0);
        const installed = pruned.then(() => this.#snapshots.end(ns, generation, seq));
        // Opened on failure too: the failure aborts the connection, and the
        // applies queued behind the gate then fail harmlessly or are skipped.
        void installed.finally(() => {
          conn.snapshotRequested.delete(ns);
          gate?.open();
          if (conn.gates.get(ns) === gate) conn.gates.delete(ns);
        }).catch(() => {});
        this.#track(conn, 0, installed, ns, log);
      },
      blob: (m, bootstrap) => {
        // Blob events of the stream queue behind a snapshot install like
        // transactions do (same gate, registered in stream order, so a hold
        // is in place before its event's empty transaction applies);
        // bootstrap blobs belong to the snapshot itself and cannot wait.
        const gate = bootstrap ? undefined : conn.gates.get(m.ns);
        if (gate === undefined) this.#blob(conn, m, bootstrap, log);
        else void gate.done.then(() => this.#blob(conn, m, bootstrap, log));
      },
      mark: (ns, generation, seq) => {
        const run = (): void => {
          const n = this.#replica.opened(ns);
          if (n === undefined || conn.closing || n.position.generation !== generation) return;
          n.durability.mark(seq);
          n.scheduleDurableSync();
        };
        const gate = conn.gates.get(ns);
        if (gate === undefined) run();
        else void gate.done.then(run);
      },
      heartbeat: () => {},
      peerError: (m: ErrorMessage) => {
        log.warn({ code: m.code, ns: m.ns, fatal: m.fatal }, `primary reported: ${m.message}`);
        this.#recordError(new WalwireError(m.message), m.code);
      },
    };
  }

  /** Hands one blob message to its namespace's BlobWriter; BLOB_ACKs go back on this connection. */
  #blob(conn: Connection, m: BlobBeginMessage | BlobChunkMessage | BlobEndMessage | BlobDeleteMessage | BlobGoneMessage, bootstrap: boolean, log: Logger): void {
    const n = this.#replica.opened(m.ns);
    if (n === undefined || conn.closing) return;
    try {
      switch (m.type) {
        case MessageType.BLOB_BEGIN:
          n.blobs.begin(m, bootstrap, (outcome, bytes) =>
            this.#send(conn, { type: MessageType.BLOB_ACK, ns: m.ns, generation: m.generation, seq: m.seq, blobId: m.blobId, bytes, outcome }),
          );
          return;
        case MessageType.BLOB_CHUNK:
          n.blobs.chunk(m);
          return;
        case MessageType.BLOB_END:
          n.blobs.end(m);
          return;
        case MessageType.BLOB_GONE:
          n.blobs.gone(m);
          return;
        case MessageType.BLOB_DELETE:
          n.blobs.delete(m);
          return;
      }
    } catch (err) {
      const e = err instanceof WalwireError ? err : new WalwireError(String((err as Error)?.message ?? err));
      this.#abort(conn, e, log);
    }
  }

  /** A failed blob save latched a gap: reconnect (after blobRetryDelayMs) so the re-stream saves it. */
  #watchBlobs(ns: ReplicaNamespace, log: Logger): void {
    if (this.#watched.has(ns)) return;
    this.#watched.add(ns);
    ns.blobs.on('gap', ({ seq, blobId, error }) => {
      const conn = this.#conn;
      if (conn === null || conn.closing || conn.blobRetry !== null) return;
      log.warn({ ns: ns.name, seq, blobId, code: error.code, delayMs: this.options.blobRetryDelayMs }, 'blob save failed; reconnecting to re-stream from the durable cursor');
      conn.blobRetry = setTimeout(() => {
        if (!conn.closing) this.#close(conn, CloseCode.GOING_AWAY, `re-stream to save blob ${blobId} of ${ns.name}`);
      }, this.options.blobRetryDelayMs);
      conn.timers.push(conn.blobRetry);
    });
  }

  /** Asks for a snapshot, naming the one partly staged (if any) so the primary can resume it. */
  async #requestSnapshot(conn: Connection, ns: string, reason: string): Promise<void> {
    if (conn.snapshotRequested.has(ns)) return;
    conn.snapshotRequested.add(ns);
    const staged = await this.#snapshots.staged(ns);
    const resume = staged !== null && staged.staged > 0 ? staged : null;
    this.#send(conn, {
      type: MessageType.SNAPSHOT_REQUEST,
      ns,
      reason: reason.slice(0, 1000) || 'bootstrap',
      generation: resume?.manifest.generation ?? null,
      seq: resume?.manifest.seq ?? 0,
      fromChunk: resume?.staged ?? 0,
    });
  }

  #namespace(ns: string): Promise<ReplicaNamespace> {
    return this.#replica.namespace(ns);
  }

  /** Follows one unit of apply work: in-flight accounting, progress, ACK, failures. */
  #track(conn: Connection, bytes: number, work: Promise<unknown>, ns: string, log: Logger): void {
    conn.inFlightBytes += bytes;
    if (!conn.paused && (conn.inFlightBytes > this.options.maxInFlightBytes || conn.pendingChunks > 0)) {
      conn.paused = true;
      conn.ws.pause();
      log.debug({ inFlightBytes: conn.inFlightBytes, pendingChunks: conn.pendingChunks }, 'paused socket: apply queue or snapshot staging full');
    }
    const done = work.then(
      () => {
        conn.inFlightBytes -= bytes;
        conn.lastProgressAt = Date.now();
        this.#maybeResume(conn);
        this.#scheduleAck(ns);
      },
      (err: unknown) => {
        conn.inFlightBytes -= bytes;
        if (err instanceof ClosedError || conn.closing) return;
        if (err instanceof DivergedError) {
          if (!conn.snapshotRequested.has(ns)) log.error({ ns, err: err.message }, 'namespace diverged; requesting a snapshot');
          void this.#requestSnapshot(conn, ns, err.message);
          return;
        }
        const e = err instanceof WalwireError ? err : new WalwireError(String((err as Error)?.message ?? err));
        log.error({ ns, code: e.code, err: e.message }, 'apply failed; reconnecting to resume from the durable cursor');
        this.#abort(conn, e, log, CloseCode.GOING_AWAY);
      },
    );
    conn.pending.add(done);
    void done.finally(() => conn.pending.delete(done));
  }

  #maybeResume(conn: Connection): void {
    if (conn.paused && conn.pendingChunks === 0 && conn.inFlightBytes <= this.options.maxInFlightBytes / 2) {
      conn.paused = false;
      conn.lastReceivedAt = Date.now();
      conn.ws.resume();
    }
  }

  #scheduleAck(ns: string): void {
    const conn = this.#conn;
    if (conn === null || !conn.welcomed || conn.closing || conn.ackTimers.has(ns)) return;
    conn.ackTimers.set(
      ns,
      setTimeout(() => {
        conn.ackTimers.delete(ns);
        if (conn.closing) return;
        // The namespace may have been removed meanwhile (admin API): no ACK then.
        this.#namespace(ns).then(
          (n) => {
            const p = n.position;
            if (p.generation === null) return;
            this.#send(conn, { type: MessageType.ACK, ns, generation: p.generation, appliedSeq: p.appliedSeq, durableSeq: p.durableSeq });
          },
          () => undefined,
        );
      }, this.options.ackIntervalMs),
    );
  }

  #onFrame(conn: Connection, data: Buffer, isBinary: boolean, log: Logger): void {
    if (conn.closing) return;
    conn.lastReceivedAt = Date.now();
    this.#frames++;
    this.#bytes += data.length;
    try {
      if (!isBinary) throw new UnexpectedMessageError('text frame received; walwire uses binary frames only');
      conn.receiver.receive(data);
    } catch (err) {
      if (err instanceof ProtocolError) this.#abort(conn, err, log);
      else throw err;
    }
  }

  /** Periodic: heartbeat out, dead-peer detection, stall watchdog. */
  #tick(conn: Connection, log: Logger): void {
    if (conn.closing) return;
    const now = Date.now();
    const o = this.options;
    // While paused for back-pressure nothing is read, by design: the stall
    // watchdog below judges that state, not the heartbeat.
    if (!conn.paused && now - conn.lastReceivedAt > o.heartbeatTimeoutMs) {
      this.#abort(conn, new TimeoutError(`no message from the primary for ${now - conn.lastReceivedAt} ms (heartbeatTimeoutMs ${o.heartbeatTimeoutMs})`), log, CloseCode.HEARTBEAT_TIMEOUT);
      return;
    }
    if (conn.paused && now - conn.lastProgressAt > o.stallTimeoutMs) {
      this.#abort(
        conn,
        new TimeoutError(`paused for back-pressure with no commit for ${now - conn.lastProgressAt} ms (stallTimeoutMs ${o.stallTimeoutMs}, ${conn.inFlightBytes} bytes in flight)`),
        log,
        CloseCode.STALLED,
      );
      return;
    }
    for (const name of o.namespaces) this.#replica.opened(name)?.blobs.checkStalls(now);
    if (conn.welcomed && now - conn.lastSentAt >= o.heartbeatIntervalMs) {
      this.#send(conn, { type: MessageType.HEARTBEAT, sentAt: now });
    }
  }

  #send(conn: Connection, message: Message): void {
    if (conn.closing || conn.ws.readyState !== WebSocket.OPEN) return;
    conn.lastSentAt = Date.now();
    conn.ws.send(encodeMessage(message, this.options.limits));
  }

  /** Reports `err` to the primary, then closes with the matching code. */
  #abort(conn: Connection, err: WalwireError, log: Logger, closeCode?: number): void {
    if (conn.closing) return;
    log.warn({ code: err.code, err: err.message }, 'closing connection');
    this.#recordError(err);
    if (conn.ws.readyState === WebSocket.OPEN) {
      this.#send(conn, { type: MessageType.ERROR, code: err.code, message: err.message.slice(0, 4000), ns: null, fatal: true });
    }
    this.#close(conn, closeCode ?? closeCodeFor(err.code), err.message);
  }

  #fail(conn: Connection, err: WalwireError, log: Logger): void {
    log.warn({ code: err.code, err: err.message }, 'connection refused');
    this.#recordError(err);
    conn.closing = true;
  }

  #close(conn: Connection, code: number, reason: string): void {
    conn.closing = true;
    conn.receiver.close();
    const ws = conn.ws;
    if (ws.readyState === WebSocket.OPEN) {
      ws.close(code, reason.slice(0, 120));
      // A peer that never answers the close frame is cut after a grace period.
      conn.timers.push(setTimeout(() => ws.terminate(), 2000));
    } else if (ws.readyState === WebSocket.CONNECTING) {
      ws.terminate();
    }
  }

  async #onClose(conn: Connection, code: number, reason: string, log: Logger): Promise<void> {
    conn.closing = true;
    conn.receiver.close();
    for (const t of conn.timers) clearTimeout(t);
    for (const t of conn.ackTimers.values()) clearTimeout(t);
    this.#snapshots.abort();
    for (const name of this.options.namespaces) this.#replica.opened(name)?.blobs.abortAll();
    log.info({ code, reason }, 'disconnected');
    this.emit('disconnected', { code, reason });
    await Promise.allSettled(conn.pending);
    if (this.#conn === conn) this.#conn = null;
    if (this.#state === 'stopped') return;
    this.#state = 'waiting';
    const delay = this.#backoff.next();
    log.info({ delayMs: delay, attempt: this.#backoff.attempt }, 'reconnecting');
    this.#retryTimer = setTimeout(() => this.#connect(), delay);
  }

  #recordError(err: WalwireError, code: string = err.code): void {
    this.#lastError = { code, message: err.message, at: Date.now() };
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }
}
