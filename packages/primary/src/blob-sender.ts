/**
 * Streams blob content to one replica for one namespace, interleaved with
 * the transaction stream on the same connection (invariant 3: no
 * head-of-line blocking, bounded memory).
 *
 * - The log Sender announces each blob event in order (BLOB_BEGIN before the
 *   event's seq is applied) and hands the content job here; this module
 *   streams at most `maxBlobsInFlight` blobs at once as BLOB_CHUNK messages of
 *   at most `chunkBytes`, each with its own CRC-32, then BLOB_END.
 * - Flow control is by credit: content bytes sent but not acknowledged by
 *   the replica's BLOB_ACK stay under `blobWindowBytes`, and chunks leave
 *   only while fewer than `blobWindowBytes` of them sit unflushed in the
 *   socket. A replica writing blobs slowly therefore never stops the socket
 *   being read, and transactions overtake blob content after at most one
 *   window of it.
 * - A job ends at the replica's final BLOB_ACK (saved, present, failed),
 *   which frees its slot. `present` also stops the chunks of that job, and
 *   a final ACK of a job still queued removes it before it starts.
 * - A blob whose exact version is gone from the store (deleted or replaced
 *   since the event) is answered BLOB_GONE; reads that fail with a
 *   transient errno are retried briefly before the connection is failed.
 */
import type { FileHandle } from 'node:fs/promises';
import { type BlobAckMessage, BlobReadFailedError, type Message, MessageType, type ProtocolLimits, chunkFrame, crc32, encodeMessage } from '@walwire/protocol';
import { type Logger, failpointAsync } from '@walwire/runtime';
import type { FrameSink } from './sender.js';

/** What the blob sender needs from a namespace's blob store. */
export interface BlobSource {
  /** Opens exactly this version of `id`, or undefined when it is gone. */
  open(id: string, sha256: string): Promise<FileHandle | undefined>;
  /** Every live blob (bootstrap copies them all). */
  list(): readonly { readonly id: string; readonly sha256: string; readonly size: number }[];
}

export interface BlobJob {
  readonly seq: number;
  readonly blobId: string;
  readonly size: number;
  readonly sha256: string;
}

export interface BlobSenderOptions {
  readonly ns: string;
  readonly generation: string;
  readonly source: BlobSource;
  readonly sink: FrameSink;
  readonly limits: ProtocolLimits;
  /** Content bytes per BLOB_CHUNK. */
  readonly chunkBytes: number;
  /** Blobs streamed at once. */
  readonly maxBlobsInFlight: number;
  /** Content bytes sent and not yet acknowledged, across the namespace's blobs. */
  readonly blobWindowBytes: number;
  readonly logger: Logger;
  /**
   * How long an open or read that fails with a transient errno (EIO, EAGAIN,
   * EMFILE, ENFILE, EINTR, EBUSY) is retried, with doubling delays, before
   * the stream fails.
   * @default 2000
   */
  readonly readRetryMs?: number;
}

export interface BlobSenderStats {
  readonly queued: number;
  readonly inFlight: number;
  readonly bytesSent: number;
  readonly blobsSent: number;
  readonly gone: number;
  readonly failedAcks: number;
}

interface Active {
  readonly job: BlobJob;
  sent: number;
  acked: number;
  /** The replica said it needs no more chunks (present, or failed early). */
  stop: boolean;
  /** Resolves at the final BLOB_ACK. */
  readonly final: Promise<void>;
  readonly settle: () => void;
}

const TRANSIENT = new Set(['EIO', 'EAGAIN', 'EMFILE', 'ENFILE', 'EINTR', 'EBUSY']);

/** Frame bytes beyond the content: the chunk's head (names are bounded: ns 64, blob id 128 chars), keys, CRCs. */
const FRAME_HEAD_ROOM = 512;

export class BlobSender {
  readonly #o: BlobSenderOptions;
  readonly #queue: { readonly job: BlobJob; readonly announce: boolean }[] = [];
  /** By `seq:blobId`: a snapshot's bootstrap copies share one seq. */
  readonly #active = new Map<string, Active>();
  #unflushed = 0;
  #credit = 0;
  readonly #waiters: (() => void)[] = [];
  #idle: (() => void)[] = [];
  #stopped = false;
  #failure: Error | null = null;
  #bytesSent = 0;
  #blobsSent = 0;
  #gone = 0;
  #failedAcks = 0;
  /**
   * Chunk frame memory flushed to the kernel and ready for the next chunk.
   * A fresh 256 KiB buffer per chunk made V8 collect garbage for external
   * memory every few hundred MB streamed (one full collection each); at most
   * one window of frames is unflushed at a time, so reuse bounds the pool,
   * and it is dropped whenever nothing is streaming.
   */
  #frames: Buffer[] = [];
  /** Called once when streaming fails for good (the session closes the connection). */
  onFatal: (err: Error) => void = () => {};

  constructor(options: BlobSenderOptions) {
    this.#o = options;
  }

  get stats(): BlobSenderStats {
    return {
      queued: this.#queue.length,
      inFlight: this.#active.size,
      bytesSent: this.#bytesSent,
      blobsSent: this.#blobsSent,
      gone: this.#gone,
      failedAcks: this.#failedAcks,
    };
  }

  /**
   * Queues a blob's content. With `announce`, BLOB_BEGIN is sent when the
   * stream starts (bootstrap); otherwise the caller already sent it in
   * order with the log.
   */
  enqueue(job: BlobJob, announce: boolean): void {
    this.#queue.push({ job, announce });
    this.#pump();
  }

  /** Resolves when nothing is queued or in flight (every final ACK arrived). */
  drained(): Promise<void> {
    if (this.#queue.length === 0 && this.#active.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** A BLOB_ACK from the replica. */
  ack(m: BlobAckMessage): void {
    const key = `${m.seq}:${m.blobId}`;
    const a = this.#active.get(key);
    if (a === undefined) {
      // The replica answers BLOB_BEGIN at once when it already holds the
      // blob (present) or cannot take it (failed), and the log Sender
      // announces jobs that wait here for a slot: such a job is final before
      // it starts. Streaming it anyway would leave its slot waiting forever
      // for an ACK the replica (which has no job for it) never sends.
      if (m.outcome !== 'progress') this.#dropQueued(key, m.outcome);
      return; // otherwise a late ACK of a finished job
    }
    const bytes = Math.min(m.bytes, a.sent);
    if (bytes > a.acked) {
      this.#credit -= bytes - a.acked;
      a.acked = bytes;
    }
    if (m.outcome === 'progress') {
      this.#wakeAll();
      return;
    }
    if (m.outcome === 'failed') this.#failedAcks++;
    a.stop = true;
    this.#credit -= a.sent - a.acked;
    a.acked = a.sent;
    a.settle();
    this.#wakeAll();
  }

  #dropQueued(key: string, outcome: BlobAckMessage['outcome']): void {
    const at = this.#queue.findIndex((q) => `${q.job.seq}:${q.job.blobId}` === key);
    if (at === -1) return;
    this.#queue.splice(at, 1);
    if (outcome === 'failed') this.#failedAcks++;
    if (this.#queue.length === 0 && this.#active.size === 0) for (const r of this.#idle.splice(0)) r();
  }

  stop(): void {
    this.#stopped = true;
    for (const a of this.#active.values()) a.settle();
    this.#wakeAll();
  }

  #pump(): void {
    while (!this.#stopped && this.#active.size < this.#o.maxBlobsInFlight && this.#queue.length > 0) {
      const { job, announce } = this.#queue.shift()!;
      let settle = (): void => {};
      const final = new Promise<void>((resolve) => (settle = resolve));
      const a: Active = { job, sent: 0, acked: 0, stop: false, final, settle };
      this.#active.set(`${job.seq}:${job.blobId}`, a);
      void this.#stream(a, announce).then(
        () => a.final,
        (err: unknown) => {
          if (this.#failure === null && !this.#stopped) {
            const o = this.#o;
            const e = new BlobReadFailedError(`blob ${job.blobId} of ${o.ns} (seq ${job.seq}) could not be read for streaming: ${(err as Error).message}`, { cause: err });
            this.#failure = e;
            this.onFatal(e);
          }
        },
      ).finally(() => {
        this.#active.delete(`${job.seq}:${job.blobId}`);
        this.#credit -= a.sent - a.acked;
        this.#pump();
        if (this.#queue.length === 0 && this.#active.size === 0) {
          this.#frames = [];
          for (const r of this.#idle.splice(0)) r();
        }
      });
    }
  }

  async #stream(a: Active, announce: boolean): Promise<void> {
    const { job } = a;
    const o = this.#o;
    const head = { ns: o.ns, generation: o.generation, seq: job.seq, blobId: job.blobId };
    if (announce) this.#emit({ type: MessageType.BLOB_BEGIN, ...head, size: job.size, sha256: job.sha256 });
    const handle = await this.#openWithRetry(job);
    if (handle === undefined) {
      this.#gone++;
      o.logger.info({ ns: o.ns, seq: job.seq, blobId: job.blobId }, 'blob is gone from the store; telling the replica to skip it');
      this.#emit({ type: MessageType.BLOB_GONE, ...head, reason: 'deleted or replaced on the primary since this event' });
      a.settle();
      return;
    }
    try {
      const chunk = Math.min(o.chunkBytes, o.limits.maxChunkBytes);
      while (a.sent < job.size && !a.stop && !this.#stopped) {
        while ((this.#credit >= o.blobWindowBytes || this.#unflushed >= o.blobWindowBytes) && !a.stop && !this.#stopped && !o.sink.closed) {
          await new Promise<void>((resolve) => this.#waiters.push(resolve));
        }
        if (a.stop || this.#stopped || o.sink.closed) return;
        const length = Math.min(chunk, job.size - a.sent);
        // The content is read straight into its frame, and CRC-32'd once for both its field and the envelope.
        const frame = chunkFrame({ type: MessageType.BLOB_CHUNK, ...head, offset: a.sent }, length, o.limits, this.#frames.pop() ?? Buffer.allocUnsafe(chunk + FRAME_HEAD_ROOM));
        try {
          await this.#readWithRetry(handle, job, a.sent, frame.data);
        } catch (err) {
          this.#recycle(frame.buffer, chunk);
          throw err;
        }
        if (a.stop || this.#stopped || o.sink.closed) {
          this.#recycle(frame.buffer, chunk);
          return;
        }
        this.#send(frame.seal(crc32(frame.data)), () => this.#recycle(frame.buffer, chunk));
        a.sent += length;
        this.#credit += length;
        this.#bytesSent += length;
      }
      if (!a.stop && !this.#stopped) {
        this.#emit({ type: MessageType.BLOB_END, ...head });
        this.#blobsSent++;
      }
    } finally {
      await handle.close();
    }
  }

  async #openWithRetry(job: BlobJob): Promise<FileHandle | undefined> {
    return this.#retry(job, 'open', () => this.#o.source.open(job.blobId, job.sha256));
  }

  /** Fills `buf` with the blob's bytes from `offset`. */
  async #readWithRetry(handle: FileHandle, job: BlobJob, offset: number, buf: Buffer): Promise<void> {
    const length = buf.length;
    await this.#retry(job, `read at ${offset}`, async () => {
      // Inside the retried operation, so every attempt is a hit: armed with
      // errno(EIO) it fails reads the way a flaky disk does (test/blob-faults.test.ts).
      await failpointAsync('primary.blob.read');
      let done = 0;
      while (done < length) {
        const { bytesRead } = await handle.read(buf, done, length - done, offset + done);
        if (bytesRead === 0) throw Object.assign(new Error(`blob ${job.blobId} of ${this.#o.ns} ended at ${offset + done} bytes, its event says ${job.size}`), { code: 'ESHORT' });
        done += bytesRead;
      }
    });
  }

  /** Runs `op`, retrying transient errnos with doubling delays for up to readRetryMs. */
  async #retry<T>(job: BlobJob, what: string, op: () => Promise<T>): Promise<T> {
    const budget = this.#o.readRetryMs ?? 2000;
    const started = Date.now();
    for (let delay = 20; ; delay *= 2) {
      try {
        return await op();
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? '';
        if (!TRANSIENT.has(code) || Date.now() - started + delay > budget) throw err;
        this.#o.logger.warn({ ns: this.#o.ns, seq: job.seq, blobId: job.blobId, code, delayMs: delay }, `blob ${what} failed; retrying`);
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

  /** Sends at once; only chunks wait, in #stream, for credit and window. */
  #emit(message: Message): void {
    if (this.#o.sink.closed || this.#stopped) return;
    this.#send(encodeMessage(message, this.#o.limits));
  }

  /** Keeps a flushed (or never sent) chunk frame's memory for the next chunk. */
  #recycle(buffer: Buffer, chunk: number): void {
    if (buffer.length === chunk + FRAME_HEAD_ROOM && this.#active.size > 0) this.#frames.push(buffer);
  }

  /** `flushed` runs once the socket no longer holds the frame (written to the kernel, or failed). */
  #send(frame: Buffer, flushed?: () => void): void {
    const o = this.#o;
    if (o.sink.closed || this.#stopped) {
      flushed?.();
      return;
    }
    this.#unflushed += frame.length;
    o.sink.send(frame, (err) => {
      flushed?.();
      this.#unflushed -= frame.length;
      // A socket failure closes the connection; the session sees that and stops us.
      if (err) this.stop();
      this.#wakeAll();
    });
  }

  #wakeAll(): void {
    for (const w of this.#waiters.splice(0)) w();
  }
}
