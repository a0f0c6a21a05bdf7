/**
 * The primary's side of one replica connection, as an explicit state
 * machine:
 *
 *     awaiting-hello ──HELLO (version ok, namespaces known)──▶ streaming ──▶ closed
 *            │                                                     ▲
 *            └──── bad version / unknown namespace / timeout ──────┘ (ERROR, then close)
 *
 * In `streaming`, each namespace runs a Sender (log → TXN/TXN_PART) or a
 * snapshot stream, decided from the replica's HELLO position:
 *   - no copy yet, another generation, ahead of the log, behind retention, or
 *     a checksum that differs from the log's at the replica's applied seq
 *     → snapshot (and the reason is logged and sent in WELCOME);
 *   - otherwise → stream from durableSeq + 1.
 * ACKs update the replica's applied/durable positions and lag. HEARTBEATs
 * go both ways; silence for heartbeatTimeoutMs closes the connection.
 */
import {
  type AckMessage,
  CloseCode,
  type HelloMessage,
  type Message,
  MessageType,
  BlobReadFailedError,
  NamespaceUnavailableError,
  ProtocolError,
  type ProtocolLimits,
  TimeoutError,
  UnexpectedMessageError,
  UnknownNamespaceError,
  SnapshotDamagedError,
  WalwireError,
  type WelcomeNamespace,
  closeCodeFor,
  decodeMessage,
  encodeMessage,
  messageTypeName,
  negotiateVersion,
} from '@walwire/protocol';
import type { Logger } from '@walwire/runtime';
import type { WebSocket } from 'ws';
import { BlobSender, type BlobSource } from './blob-sender.js';
import { type LogSource, Sender } from './sender.js';
import { type SnapshotSource, streamSnapshot } from './snapshot-sender.js';

/** A snapshot a replica has partly staged: resume it from chunk `fromChunk`. */
export interface SnapshotResume {
  readonly generation: string;
  readonly seq: number;
  readonly fromChunk: number;
}

export type SessionState = 'awaiting-hello' | 'streaming' | 'closed';

/** What a session needs from a primary namespace. */
export interface StreamableNamespace {
  readonly name: string;
  readonly log: LogSource;
  /** Lowest seq still in the log (retention), ≥ 1. */
  firstSeq(): number;
  /** The database checksum after `seq` (seq 0 = the generation's base), or undefined if not in the log. */
  checksumAt(seq: number): Promise<string | undefined>;
  /** Commit time of `seq` for lag in ms, or undefined. */
  commitTimeAt?(seq: number): number | undefined;
  /**
   * A consistent image of the database at some seq, for bootstrap. With
   * `resume`, the image the replica partly staged is returned if it is still
   * served, so the stream can continue from its next chunk.
   */
  openSnapshot(resume?: SnapshotResume): Promise<SnapshotSource>;
  /** A bootstrap found the image damaged (SnapshotDamagedError): rebuild it, so the replica's retry succeeds. */
  rebuildDamagedSnapshot?(err: Error, damaged: { readonly generation: string; readonly seq: number }): void;
  /** The namespace's blob store, when it has one. */
  readonly blobSource?: BlobSource;
}

export interface SessionOptions {
  readonly limits: ProtocolLimits;
  readonly heartbeatIntervalMs: number;
  readonly heartbeatTimeoutMs: number;
  readonly helloTimeoutMs: number;
  readonly windowBytes: number;
  readonly stallTimeoutMs: number;
  readonly snapshotChunkBytes: number;
  /** Page bytes a TXN or TXN_PART message aims at (bounded latency and memory per message). */
  readonly messageTargetBytes: number;
  /** Content bytes per BLOB_CHUNK. */
  readonly blobChunkBytes: number;
  /** Blobs streamed at once per replica and namespace. */
  readonly maxBlobsInFlight: number;
  /** Unacknowledged blob content per replica and namespace (BLOB_ACK credit). */
  readonly blobWindowBytes: number;
  /** Retry budget of a blob open or read failing with a transient errno. */
  readonly blobReadRetryMs: number;
  readonly primaryId: string;
}

export interface ReplicaNamespaceStatus {
  readonly ns: string;
  readonly mode: 'stream' | 'snapshot';
  readonly appliedSeq: number;
  readonly durableSeq: number;
  readonly sentSeq: number;
  readonly ackedAt: number | null;
  readonly bytesSent: number;
  /** Primary head seq minus the replica's applied seq. */
  readonly lagSeqs: number;
  /** Page bytes sent but not yet acknowledged as applied. */
  readonly lagBytes: number;
  /** Age of the oldest commit sent and not yet acknowledged (0 when caught up). */
  readonly lagMs: number;
  /** Blobs streaming and queued, content bytes sent, blobs reported gone. */
  readonly blobs: { readonly inFlight: number; readonly queued: number; readonly bytesSent: number; readonly sent: number; readonly gone: number; readonly failed: number };
}

export interface SessionStatus {
  readonly id: number;
  readonly replicaId: string | null;
  readonly remote: string;
  readonly state: SessionState;
  readonly connectedAt: number;
  readonly version: number | null;
  readonly namespaces: readonly ReplicaNamespaceStatus[];
}

interface NsStream {
  readonly ns: StreamableNamespace;
  mode: 'stream' | 'snapshot';
  sender: Sender | null;
  blobs: BlobSender | null;
  /** Totals of blob senders already replaced on this connection. */
  blobTotals: { bytesSent: number; sent: number; gone: number; failed: number };
  appliedSeq: number;
  durableSeq: number;
  ackedAt: number | null;
  snapshotBytes: number;
  snapshotting: boolean;
}

export class ReplicaSession {
  readonly id: number;
  readonly remote: string;
  readonly connectedAt = Date.now();
  readonly #ws: WebSocket;
  readonly #options: SessionOptions;
  readonly #logger: Logger;
  readonly #resolve: (name: string) => StreamableNamespace | undefined;
  readonly #unavailable: (name: string) => string | null;
  readonly #streams = new Map<string, NsStream>();
  /** Namespaces this replica asked for that are configured here but not running yet. */
  readonly #waiting = new Set<string>();
  readonly #timers: NodeJS.Timeout[] = [];
  #state: SessionState = 'awaiting-hello';
  #replicaId: string | null = null;
  #version: number | null = null;
  #lastReceivedAt = Date.now();
  #lastSentAt = 0;
  readonly #onAck: (s: ReplicaSession, ns: string, ack: AckMessage) => void;

  constructor(options: {
    id: number;
    ws: WebSocket;
    remote: string;
    session: SessionOptions;
    logger: Logger;
    resolve: (name: string) => StreamableNamespace | undefined;
    /** Why a namespace that is configured is not running (WALWIRE_ERR_NAMESPACE_UNAVAILABLE), or null. */
    unavailable: (name: string) => string | null;
    onAck: (s: ReplicaSession, ns: string, ack: AckMessage) => void;
    /** The upgraded TCP socket, for byte-level liveness. */
    socket?: import('node:net').Socket;
  }) {
    this.id = options.id;
    this.remote = options.remote;
    this.#ws = options.ws;
    this.#options = options.session;
    this.#logger = options.logger;
    this.#resolve = options.resolve;
    this.#unavailable = options.unavailable;
    this.#onAck = options.onAck;
    this.#ws.on('message', (data: Buffer, isBinary: boolean) => this.#onFrame(data, isBinary));
    // Liveness counts bytes, not whole messages (a large message on a slow link).
    options.socket?.on('data', () => (this.#lastReceivedAt = Date.now()));
    this.#ws.on('close', (code, reason) => this.#onClose(code, reason.toString()));
    this.#ws.on('error', (err) => this.#logger.warn({ err: err.message }, 'socket error'));
    this.#timers.push(
      setTimeout(() => {
        if (this.#state === 'awaiting-hello') this.#abort(new TimeoutError(`no HELLO within ${this.#options.helloTimeoutMs} ms`));
      }, this.#options.helloTimeoutMs),
      setInterval(() => this.#tick(), Math.min(250, this.#options.heartbeatIntervalMs)),
    );
  }

  get state(): SessionState {
    return this.#state;
  }

  get replicaId(): string | null {
    return this.#replicaId;
  }

  get status(): SessionStatus {
    return {
      id: this.id,
      replicaId: this.#replicaId,
      remote: this.remote,
      state: this.#state,
      connectedAt: this.connectedAt,
      version: this.#version,
      namespaces: [...this.#streams.values()].map((s) => {
        const stats = s.sender?.stats;
        const oldest = stats?.oldestUnackedCommitTime ?? null;
        return {
          ns: s.ns.name,
          mode: s.mode,
          appliedSeq: s.appliedSeq,
          durableSeq: s.durableSeq,
          sentSeq: stats?.sentSeq ?? 0,
          ackedAt: s.ackedAt,
          bytesSent: (stats?.bytes ?? 0) + s.snapshotBytes,
          lagSeqs: Math.max(0, s.ns.log.headSeq() - s.appliedSeq),
          lagBytes: stats?.unackedBytes ?? 0,
          lagMs: oldest === null ? 0 : Math.max(0, Date.now() - oldest),
          blobs: this.#blobStatus(s),
        };
      }),
    };
  }

  /** True when this replica asked for `ns` while it was not running yet. */
  waitsFor(ns: string): boolean {
    return this.#waiting.has(ns);
  }

  /** Closes the session (server shutdown, namespace reset). */
  close(code: number = CloseCode.GOING_AWAY, reason = 'primary shutting down'): void {
    if (this.#state === 'closed') return;
    this.#shutdown();
    this.#ws.close(code, reason);
    setTimeout(() => this.#ws.terminate(), 2000).unref();
  }

  #onFrame(data: Buffer, isBinary: boolean): void {
    if (this.#state === 'closed') return;
    this.#lastReceivedAt = Date.now();
    try {
      if (!isBinary) throw new UnexpectedMessageError('text frame received; walwire uses binary frames only');
      this.#dispatch(decodeMessage(data, this.#options.limits));
    } catch (err) {
      if (err instanceof WalwireError) this.#abort(err);
      else throw err;
    }
  }

  #dispatch(m: Message): void {
    if (m.type === MessageType.HEARTBEAT) return;
    if (m.type === MessageType.ERROR) {
      this.#logger.warn({ code: m.code, ns: m.ns, fatal: m.fatal }, `replica reported: ${m.message}`);
      return;
    }
    if (this.#state === 'awaiting-hello') {
      if (m.type !== MessageType.HELLO) throw new UnexpectedMessageError(`${messageTypeName(m.type)} before HELLO`);
      void this.#hello(m).catch((err: unknown) => this.#abort(err instanceof WalwireError ? err : new WalwireError(String(err))));
      this.#state = 'streaming';
      return;
    }
    switch (m.type) {
      case MessageType.ACK: {
        const s = this.#streams.get(m.ns);
        if (s === undefined) throw new UnexpectedMessageError(`ACK for namespace ${m.ns}, which this connection does not stream`);
        s.appliedSeq = Math.max(s.appliedSeq, m.appliedSeq);
        s.durableSeq = Math.max(s.durableSeq, m.durableSeq);
        s.ackedAt = Date.now();
        s.sender?.acked(m.appliedSeq);
        this.#onAck(this, m.ns, m);
        return;
      }
      case MessageType.BLOB_ACK: {
        const s = this.#streams.get(m.ns);
        if (s === undefined) throw new UnexpectedMessageError(`BLOB_ACK for namespace ${m.ns}, which this connection does not stream`);
        if (m.outcome === 'failed') this.#logger.warn({ ns: m.ns, seq: m.seq, blobId: m.blobId }, 'replica failed to save a blob; it re-streams it on its next connection');
        s.blobs?.ack(m);
        return;
      }
      case MessageType.SNAPSHOT_REQUEST: {
        const s = this.#streams.get(m.ns);
        if (s === undefined) throw new UnexpectedMessageError(`SNAPSHOT_REQUEST for namespace ${m.ns}, which this connection does not stream`);
        if (s.snapshotting) throw new UnexpectedMessageError(`SNAPSHOT_REQUEST for ${m.ns} while its snapshot is streaming`);
        this.#logger.info({ ns: m.ns, reason: m.reason, resume: m.generation === null ? null : `${m.generation}@${m.seq} from chunk ${m.fromChunk}` }, 'replica requested a snapshot');
        s.sender?.stop();
        this.#startSnapshot(s, m.reason, m.generation === null ? undefined : { generation: m.generation, seq: m.seq, fromChunk: m.fromChunk });
        return;
      }
      default:
        throw new UnexpectedMessageError(`${messageTypeName(m.type)} is not sent by a replica`);
    }
  }

  async #hello(m: HelloMessage): Promise<void> {
    this.#version = negotiateVersion(m.minVersion, m.maxVersion);
    this.#replicaId = m.replicaId;
    const welcome: WelcomeNamespace[] = [];
    const plans: { s: NsStream; mode: 'stream' | 'snapshot'; reason: string; from: number }[] = [];
    // Namespaces are isolated (invariant 7): one this primary does not serve
    // gets its own non-fatal ERROR and the others stream; only a HELLO that
    // names no served namespace is refused as a whole.
    const served = m.namespaces.filter((p) => this.#resolve(p.ns)?.log.generation !== undefined);
    // A namespace configured here but not running (it failed to start and
    // is retried) is not refused for good: the replica is told to wait, and
    // reconnected once it runs (reconnectWaiting).
    const unavailable = new Map<string, string>();
    for (const p of m.namespaces) {
      const why = served.includes(p) ? null : this.#unavailable(p.ns);
      if (why !== null) unavailable.set(p.ns, why);
    }
    if (served.length === 0 && m.namespaces.length > 0) {
      if (unavailable.size > 0) throw new NamespaceUnavailableError([...unavailable.values()].join('; '));
      throw new UnknownNamespaceError(`namespace ${m.namespaces.map((p) => JSON.stringify(p.ns)).join(', ')} does not exist on this primary`);
    }
    for (const p of m.namespaces) {
      if (served.includes(p)) continue;
      const why = unavailable.get(p.ns);
      if (why !== undefined) {
        this.#waiting.add(p.ns);
        this.#logger.warn({ ns: p.ns, replica: m.replicaId, reason: why }, 'replica asked for a namespace that is not running yet; it is reconnected once it runs');
        this.#send({ type: MessageType.ERROR, code: 'WALWIRE_ERR_NAMESPACE_UNAVAILABLE', message: why, ns: p.ns, fatal: false });
        continue;
      }
      this.#logger.warn({ ns: p.ns, replica: m.replicaId }, 'replica asked for a namespace this primary does not serve');
      this.#send({ type: MessageType.ERROR, code: 'WALWIRE_ERR_UNKNOWN_NAMESPACE', message: `namespace ${JSON.stringify(p.ns)} does not exist on this primary`, ns: p.ns, fatal: false });
    }
    for (const p of served) {
      const ns = this.#resolve(p.ns)!;
      const generation = ns.log.generation!;
      const head = ns.log.headSeq();
      let reason = '';
      if (p.generation === null) reason = 'new replica';
      else if (p.generation !== generation) reason = `generation changed: replica has ${p.generation}, primary has ${generation}`;
      else if (p.appliedSeq > head) reason = `replica applied seq ${p.appliedSeq} is ahead of the primary head ${head}`;
      else if (p.durableSeq + 1 < ns.firstSeq()) reason = `replica durable seq ${p.durableSeq} is behind retention (log starts at seq ${ns.firstSeq()})`;
      else {
        const expected = await ns.checksumAt(p.appliedSeq);
        if (expected === undefined) reason = `seq ${p.appliedSeq} is no longer in the log`;
        else if (expected !== p.checksum) reason = `checksum mismatch at seq ${p.appliedSeq}: replica ${String(p.checksum)}, primary ${expected}`;
      }
      const mode = reason === '' ? 'stream' : 'snapshot';
      const s: NsStream = { ns, mode, sender: null, blobs: null, blobTotals: { bytesSent: 0, sent: 0, gone: 0, failed: 0 }, appliedSeq: p.appliedSeq, durableSeq: p.durableSeq, ackedAt: null, snapshotBytes: 0, snapshotting: false };
      this.#streams.set(p.ns, s);
      welcome.push({ ns: p.ns, generation, headSeq: head, mode, reason });
      plans.push({ s, mode, reason, from: p.durableSeq + 1 });
      if (reason) this.#logger.info({ ns: p.ns, replica: m.replicaId, reason }, 'replica needs a snapshot');
    }
    this.#send({ type: MessageType.WELCOME, version: this.#version, primaryId: this.#options.primaryId, namespaces: welcome });
    this.#logger.info({ replica: m.replicaId, version: this.#version, namespaces: welcome.map((w) => `${w.ns}:${w.mode}`) }, 'replica connected');
    // A namespace in snapshot mode waits for the replica's SNAPSHOT_REQUEST,
    // which names any snapshot it has partly staged, so it can resume.
    for (const plan of plans) if (plan.mode === 'stream') this.#startSender(plan.s, plan.from);
  }

  #startSender(s: NsStream, fromSeq: number): void {
    const generation = s.ns.log.generation!;
    s.mode = 'stream';
    const blobs = this.#newBlobSender(s, generation);
    const sender = new Sender({
      ns: s.ns.name,
      log: s.ns.log,
      sink: this.#frameSink(),
      limits: this.#options.limits,
      windowBytes: this.#options.windowBytes,
      messageTargetBytes: this.#options.messageTargetBytes,
      logger: this.#logger,
      generation,
      fromSeq,
      appliedSeq: s.appliedSeq,
      ...(blobs ? { blobs } : {}),
    });
    s.sender = sender;
    sender.run().then(
      (outcome) => {
        if (outcome === 'generation-changed' && this.#state !== 'closed') {
          this.#logger.info({ ns: s.ns.name }, 'generation changed; closing so the replica bootstraps again');
          this.close(CloseCode.GOING_AWAY, `generation of ${s.ns.name} changed`);
        }
      },
      (err: unknown) => this.#abort(err instanceof WalwireError ? err : new WalwireError((err as Error).message)),
    );
  }

  #startSnapshot(s: NsStream, reason: string, resume?: SnapshotResume): void {
    s.mode = 'snapshot';
    s.sender = null;
    this.#retireBlobSender(s);
    s.snapshotting = true;
    let served: { generation: string; seq: number } | undefined;
    void (async () => {
      const source = await s.ns.openSnapshot(resume);
      served = { generation: source.generation, seq: source.seq };
      // Resume only the very image the replica staged; anything else starts over.
      const fromChunk = resume !== undefined && resume.generation === source.generation && resume.seq === source.seq ? resume.fromChunk : 0;
      const sent = await streamSnapshot({
        fromChunk,
        ns: s.ns.name,
        source,
        sink: this.#frameSink(),
        limits: this.#options.limits,
        chunkBytes: this.#options.snapshotChunkBytes,
        windowBytes: this.#options.windowBytes,
        logger: this.#logger,
        reason,
        // Bootstrap copies every blob the store holds before SNAPSHOT_END, and
        // waits for the replica's final BLOB_ACK of each: the replica installs
        // the image (durable cursor = snapshot seq) only with all of them saved.
        beforeEnd: async () => {
          const blobs = this.#newBlobSender(s, source.generation);
          if (blobs === null) return;
          const listed = s.ns.blobSource!.list();
          for (const b of listed) blobs.enqueue({ seq: source.seq, blobId: b.id, size: b.size, sha256: b.sha256 }, true);
          if (listed.length > 0) this.#logger.info({ ns: s.ns.name, blobs: listed.length }, 'bootstrap: copying blobs before the snapshot ends');
          await blobs.drained();
          this.#retireBlobSender(s);
        },
      });
      s.snapshotBytes += sent.bytes;
      s.snapshotting = false;
      if (this.#state === 'closed') return;
      s.appliedSeq = source.seq;
      s.durableSeq = source.seq;
      this.#startSender(s, source.seq + 1);
    })().catch((err: unknown) => {
      if (err instanceof SnapshotDamagedError && served !== undefined) s.ns.rebuildDamagedSnapshot?.(err, served);
      this.#abort(err instanceof WalwireError ? err : new WalwireError((err as Error).message));
    });
  }

  #newBlobSender(s: NsStream, generation: string): BlobSender | null {
    this.#retireBlobSender(s);
    const source = s.ns.blobSource;
    if (source === undefined) return null;
    const o = this.#options;
    const blobs = new BlobSender({
      ns: s.ns.name,
      generation,
      source,
      sink: this.#frameSink(),
      limits: o.limits,
      chunkBytes: o.blobChunkBytes,
      maxBlobsInFlight: o.maxBlobsInFlight,
      blobWindowBytes: o.blobWindowBytes,
      readRetryMs: o.blobReadRetryMs,
      logger: this.#logger,
    });
    blobs.onFatal = (err) => this.#abort(err instanceof WalwireError ? err : new BlobReadFailedError(`blob stream of ${s.ns.name} failed: ${err.message}`, { cause: err }));
    s.blobs = blobs;
    return blobs;
  }

  #retireBlobSender(s: NsStream): void {
    const b = s.blobs;
    if (b === null) return;
    b.stop();
    const st = b.stats;
    s.blobTotals.bytesSent += st.bytesSent;
    s.blobTotals.sent += st.blobsSent;
    s.blobTotals.gone += st.gone;
    s.blobTotals.failed += st.failedAcks;
    s.blobs = null;
  }

  #blobStatus(s: NsStream): ReplicaNamespaceStatus['blobs'] {
    const st = s.blobs?.stats;
    const t = s.blobTotals;
    return {
      inFlight: st?.inFlight ?? 0,
      queued: st?.queued ?? 0,
      bytesSent: t.bytesSent + (st?.bytesSent ?? 0),
      sent: t.sent + (st?.blobsSent ?? 0),
      gone: t.gone + (st?.gone ?? 0),
      failed: t.failed + (st?.failedAcks ?? 0),
    };
  }

  #frameSink(): { send: (frame: Buffer, done: (err?: Error) => void) => void; readonly closed: boolean } {
    const session = this;
    return {
      send: (frame, done) => {
        this.#lastSentAt = Date.now();
        this.#ws.send(frame, done);
      },
      get closed() {
        return session.#state === 'closed';
      },
    };
  }

  #tick(): void {
    if (this.#state === 'closed') return;
    const now = Date.now();
    if (now - this.#lastReceivedAt > this.#options.heartbeatTimeoutMs) {
      this.#abort(new TimeoutError(`no message from replica ${this.#replicaId ?? this.remote} for ${now - this.#lastReceivedAt} ms`), CloseCode.HEARTBEAT_TIMEOUT);
      return;
    }
    for (const s of this.#streams.values()) {
      const blocked = s.sender?.stats.blockedSince;
      if (blocked != null && now - blocked > this.#options.stallTimeoutMs) {
        this.#abort(new TimeoutError(`send window to replica ${this.#replicaId} full for ${now - blocked} ms (ns ${s.ns.name}, stallTimeoutMs ${this.#options.stallTimeoutMs})`), CloseCode.STALLED);
        return;
      }
    }
    if (this.#state === 'streaming' && now - this.#lastSentAt >= this.#options.heartbeatIntervalMs) {
      this.#send({ type: MessageType.HEARTBEAT, sentAt: now });
    }
  }

  #send(m: Message): void {
    if (this.#state === 'closed' || this.#ws.readyState !== this.#ws.OPEN) return;
    this.#lastSentAt = Date.now();
    this.#ws.send(encodeMessage(m, this.#options.limits));
  }

  /** Sends ERROR with the failure's code, then closes with the matching close code. */
  #abort(err: WalwireError, closeCode?: number): void {
    if (this.#state === 'closed') return;
    const level = err instanceof ProtocolError || err instanceof UnknownNamespaceError ? 'warn' : 'error';
    this.#logger[level]({ code: err.code, err: err.message, replica: this.#replicaId }, 'closing replica connection');
    this.#send({ type: MessageType.ERROR, code: err.code, message: err.message.slice(0, 4000), ns: null, fatal: true });
    this.close(closeCode ?? closeCodeFor(err.code), err.message.slice(0, 120));
  }

  #shutdown(): void {
    this.#state = 'closed';
    for (const t of this.#timers) clearTimeout(t);
    for (const s of this.#streams.values()) {
      s.sender?.stop();
      s.blobs?.stop();
    }
  }

  #onClose(code: number, reason: string): void {
    if (this.#state !== 'closed') this.#shutdown();
    this.#logger.info({ code, reason, replica: this.#replicaId }, 'replica disconnected');
  }
}
