/**
 * Streams one namespace's log to one replica: reads lazily from the resume
 * seq, batches small transactions into TXN messages, splits large ones into
 * TXN_PART messages, and never has more than `windowBytes` of encoded
 * frames written to the socket but not yet flushed to the kernel
 * (invariant 3: a slow replica costs the primary a bounded amount of memory).
 *
 * Resume rule (design.md): the stream starts at durableSeq + 1. Transactions
 * at or below the replica's appliedSeq are not re-sent (it has them); blob
 * events in that range are, because their durability is what the durable
 * cursor is waiting for.
 */
import {
  type Message,
  MessageType,
  type PageImage,
  type ProtocolLimits,
  type Txn,
  encodeMessage,
} from '@walwire/protocol';
import type { Logger } from '@walwire/runtime';
import type { BlobSender } from './blob-sender.js';
import type { LogRecord } from './log-record.js';

/** What a Sender needs from the namespace's replication log. */
export interface LogSource {
  readonly generation: string | undefined;
  readonly pageSize: number;
  /** Highest seq appended, or 0. */
  headSeq(): number;
  read(from: number): AsyncIterable<LogRecord>;
  /** Resolves at the next append (or generation change / close). */
  nextAppend(): Promise<void>;
}

/** What a Sender needs from the connection. */
export interface FrameSink {
  /**
   * Sends a frame; `done` fires once the socket no longer reads the frame's
   * memory: flushed to the kernel, or the socket failed or was destroyed.
   */
  send(frame: Buffer, done: (err?: Error) => void): void;
  readonly closed: boolean;
}

export interface SenderStats {
  readonly sentSeq: number;
  readonly messages: number;
  readonly bytes: number;
  readonly unflushedBytes: number;
  /** Since when the window has been full, or null. */
  readonly blockedSince: number | null;
  /** Page bytes sent but not yet acknowledged as applied. */
  readonly unackedBytes: number;
  /** Commit time of the oldest seq sent but not yet acknowledged, or null. */
  readonly oldestUnackedCommitTime: number | null;
}

/** Encoded-size overhead allowance per page (map keys, pgno, bin header). */
const PAGE_OVERHEAD = 32;
/** Allowance for the message envelope and txn fields. */
const MESSAGE_OVERHEAD = 4096;
/**
 * Encoded bytes a full message may take per page in frame memory: the page
 * plus this (its own fields, and one transaction's fields when every
 * transaction is one page). A frame that does not fit gets new memory.
 */
const FRAME_PAGE_ROOM = 128;

export class Sender {
  readonly ns: string;
  readonly #log: LogSource;
  readonly #sink: FrameSink;
  readonly #limits: ProtocolLimits;
  readonly #windowBytes: number;
  readonly #messageTargetBytes: number;
  readonly #logger: Logger;
  readonly #generation: string;
  #next: number;
  readonly #appliedSeq: number;
  readonly #blobs: BlobSender | null;
  /** STREAM_MARK sent: everything up to the replica's applied seq has been re-sent. */
  #marked = false;
  #unflushed = 0;
  #messages = 0;
  #bytes = 0;
  #stopped = false;
  #blockedSince: number | null = null;
  /** Sent transactions not yet acknowledged, in seq order (bounded by the send window and the replica's queue). */
  readonly #unacked: { readonly seq: number; readonly commitTime: number; bytes: number }[] = [];
  #unackedBytes = 0;
  #drained: (() => void) | null = null;
  #failure: Error | null = null;
  /**
   * Frame memory flushed to the kernel and ready for the next message.
   * A slow replica keeps each frame unflushed for seconds, long enough for
   * V8 to move it to the old generation, where it is freed only by a full
   * collection: with new memory per message, up to tens of MB of flushed
   * frames waited for one. Reused memory bounds it by the window: a frame
   * in pooled memory is charged the whole buffer, and only frames of at
   * least half a buffer use one.
   */
  #frames: Buffer[] = [];
  #frameBytes = 0;
  /** Waiting for the next append: flushed frame memory is dropped, not pooled. */
  #caughtUp = false;
  readonly #stopSignal: Promise<void>;
  #signalStop: () => void = () => {};

  constructor(options: {
    ns: string;
    log: LogSource;
    sink: FrameSink;
    limits: ProtocolLimits;
    windowBytes: number;
    /** Page bytes a message aims at; never above what the limits allow. */
    messageTargetBytes?: number;
    logger: Logger;
    generation: string;
    /** First seq to send (the replica's durable seq + 1). */
    fromSeq: number;
    /** Transactions at or below this seq are skipped. */
    appliedSeq: number;
    /** Streams blob content; without it a blob event fails the stream. */
    blobs?: BlobSender;
  }) {
    this.ns = options.ns;
    this.#log = options.log;
    this.#sink = options.sink;
    this.#limits = options.limits;
    this.#windowBytes = options.windowBytes;
    this.#messageTargetBytes = options.messageTargetBytes ?? Number.MAX_SAFE_INTEGER;
    this.#logger = options.logger;
    this.#generation = options.generation;
    this.#next = options.fromSeq;
    this.#appliedSeq = options.appliedSeq;
    this.#blobs = options.blobs ?? null;
    this.#stopSignal = new Promise((resolve) => (this.#signalStop = resolve));
  }

  get stats(): SenderStats {
    return {
      sentSeq: this.#next - 1,
      messages: this.#messages,
      bytes: this.#bytes,
      unflushedBytes: this.#unflushed,
      blockedSince: this.#blockedSince,
      unackedBytes: this.#unackedBytes,
      oldestUnackedCommitTime: this.#unacked[0]?.commitTime ?? null,
    };
  }

  /** The replica acknowledged every seq up to `appliedSeq` as applied. */
  acked(appliedSeq: number): void {
    while (this.#unacked.length > 0 && this.#unacked[0]!.seq <= appliedSeq) this.#unackedBytes -= this.#unacked.shift()!.bytes;
  }

  #sent(txn: Txn): void {
    let bytes = 0;
    for (const p of txn.pages) bytes += p.data.length;
    this.#unacked.push({ seq: txn.seq, commitTime: txn.commitTime, bytes });
    this.#unackedBytes += bytes;
  }

  /** Ends run() at the next step; the session calls this when the socket closes. */
  stop(): void {
    this.#stopped = true;
    this.#drained?.();
    this.#signalStop();
  }

  /**
   * Runs until stopped, the socket closes, or the log's generation changes
   * (resolves 'generation-changed': the replica must reconnect and bootstrap).
   */
  async run(): Promise<'stopped' | 'generation-changed'> {
    while (!this.#stopped && !this.#sink.closed) {
      if (this.#failure) throw this.#failure;
      if (this.#log.generation !== this.#generation) return 'generation-changed';
      if (this.#next > this.#log.headSeq()) {
        // Caught up: frame memory is not kept for a burst that may never
        // come, including the buffers of frames still being flushed (their
        // callbacks see #caughtUp), so an idle stream holds none.
        this.#caughtUp = true;
        this.#frames = [];
        await this.#mark();
        await Promise.race([this.#log.nextAppend(), this.#stopSignal]);
        continue;
      }
      this.#caughtUp = false;
      await this.#sendFrom();
    }
    return 'stopped';
  }

  /** Sends records from #next until the window fills or the log ends. */
  async #sendFrom(): Promise<void> {
    const pageBudget = this.#pageBudget();
    let batch: Txn[] = [];
    let batchPages = 0;
    const flush = async (): Promise<void> => {
      if (batch.length === 0) return;
      await this.#emit({ type: MessageType.TXN, ns: this.ns, generation: this.#generation, txns: batch });
      for (const t of batch) this.#sent(t);
      batch = [];
      batchPages = 0;
    };
    for await (const record of this.#log.read(this.#next)) {
      if (this.#stopped || this.#sink.closed) return;
      if (record.generation !== this.#generation) return;
      if (record.kind === 'txn') {
        const txn = record.txn;
        if (txn.seq > this.#appliedSeq) {
          if (txn.pages.length > pageBudget) {
            await flush();
            await this.#sendParts(txn, pageBudget);
          } else {
            if (batchPages + txn.pages.length > pageBudget || batch.length >= this.#limits.maxTxnsPerMessage) await flush();
            batch.push(txn);
            batchPages += txn.pages.length;
          }
        }
      } else {
        // A blob event is announced in log order (BLOB_BEGIN / BLOB_DELETE)
        // before the empty transaction that moves the applied seq past it,
        // so the replica holds its durable cursor below the event before it
        // can apply it (invariant 2). Content streams beside the log.
        if (this.#blobs === null) throw new Error(`namespace ${this.ns} seq ${record.seq} is a ${record.kind} event and this stream has no blob source`);
        await flush();
        const head = { ns: this.ns, generation: this.#generation, seq: record.seq, blobId: record.blobId };
        if (record.kind === 'blob-put') {
          await this.#emit({ type: MessageType.BLOB_BEGIN, ...head, size: record.size, sha256: record.sha256 });
          this.#blobs.enqueue({ seq: record.seq, blobId: record.blobId, size: record.size, sha256: record.sha256 }, false);
        } else {
          await this.#emit({ type: MessageType.BLOB_DELETE, ...head });
        }
        if (record.seq > this.#appliedSeq) {
          batch.push({ seq: record.seq, commitSize: record.commitSize, checksum: record.checksum, commitTime: record.time, pages: [] });
        }
      }
      this.#next = record.seq + 1;
      if (!this.#marked && this.#next - 1 >= this.#appliedSeq) await this.#mark();
      if (this.#unflushed >= this.#windowBytes) break;
    }
    await flush();
  }

  /**
   * Once per stream, when everything up to the replica's applied seq has
   * been sent: STREAM_MARK tells the replica that every blob event it may
   * have applied without saving has been announced again, so its durable
   * cursor can move past the point it held at connect.
   */
  async #mark(): Promise<void> {
    if (this.#marked || this.#next - 1 < this.#appliedSeq) return;
    this.#marked = true;
    await this.#emit({ type: MessageType.STREAM_MARK, ns: this.ns, generation: this.#generation, seq: this.#next - 1 });
  }

  /**
   * Counts the seq as sent part by part: on a slow link a large seq streams
   * for seconds within the window, and the replica's lag (seqs, bytes,
   * milliseconds) shows it from its first part on.
   */
  async #sendParts(txn: Txn, pageBudget: number): Promise<void> {
    const partCount = Math.ceil(txn.pages.length / pageBudget);
    const entry = { seq: txn.seq, commitTime: txn.commitTime, bytes: 0 };
    for (let part = 0; part < partCount; part++) {
      const pages: PageImage[] = txn.pages.slice(part * pageBudget, (part + 1) * pageBudget) as PageImage[];
      await this.#emit({
        type: MessageType.TXN_PART,
        ns: this.ns,
        generation: this.#generation,
        seq: txn.seq,
        part,
        partCount,
        commitSize: txn.commitSize,
        checksum: txn.checksum,
        commitTime: txn.commitTime,
        pages,
      });
      if (part === 0) this.#unacked.push(entry);
      let bytes = 0;
      for (const p of pages) bytes += p.data.length;
      entry.bytes += bytes;
      this.#unackedBytes += bytes;
    }
  }

  /** Pages that fit one message under both the page-count and byte limits. */
  #pageBudget(): number {
    const byBytes = Math.floor((this.#limits.maxMessageBytes - MESSAGE_OVERHEAD) / (this.#log.pageSize + PAGE_OVERHEAD));
    const byTarget = Math.floor(this.#messageTargetBytes / this.#log.pageSize);
    return Math.max(1, Math.min(this.#limits.maxPagesPerMessage, byBytes, byTarget));
  }

  /** Size of pooled frame memory: a message of a full page budget. */
  #frameUnit(): number {
    const bytes = this.#pageBudget() * (this.#log.pageSize + FRAME_PAGE_ROOM) + MESSAGE_OVERHEAD;
    if (bytes !== this.#frameBytes) {
      // The page size is set by the first transaction; memory of another size is dropped.
      this.#frameBytes = bytes;
      this.#frames = [];
    }
    return bytes;
  }

  /** Encodes and sends one message, first waiting while the window is full. */
  async #emit(message: Message): Promise<void> {
    while (this.#unflushed >= this.#windowBytes && !this.#stopped && !this.#sink.closed) {
      this.#blockedSince ??= Date.now();
      await new Promise<void>((resolve) => (this.#drained = resolve));
      this.#drained = null;
    }
    this.#blockedSince = null;
    if (this.#stopped || this.#sink.closed) return;
    let memory: Buffer | undefined;
    const frame = encodeMessage(message, this.#limits, (bytes) => {
      const unit = this.#frameUnit();
      if (bytes * 2 < unit || bytes > unit) return undefined;
      memory = this.#frames.pop() ?? Buffer.allocUnsafeSlow(unit);
      return memory;
    });
    const charged = memory?.length ?? frame.length;
    this.#unflushed += charged;
    this.#messages++;
    this.#bytes += frame.length;
    this.#sink.send(frame, (err) => {
      this.#unflushed -= charged;
      if (err && !this.#failure) this.#failure = err;
      // After a failed write the socket may still hold the frame: its memory is not reused.
      if (memory !== undefined && !err && !this.#stopped && !this.#caughtUp && memory.length === this.#frameBytes) this.#frames.push(memory);
      this.#drained?.();
    });
    this.#logger.trace({ ns: this.ns, type: message.type, bytes: frame.length }, 'sent');
  }
}
