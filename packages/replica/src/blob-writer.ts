/**
 * Saves streamed blobs of one namespace and moves the durable cursor past
 * their events (design.md invariants 2 and 3).
 *
 * A blob stream is BLOB_BEGIN, BLOB_CHUNK × n (in order, each with its
 * CRC-32), BLOB_END. Chunks are hashed as they arrive and written to a temp
 * file in the blob directory; at END the file is fsynced, its size and
 * SHA-256 checked, renamed to `<id>~<sha256>` and the directory fsynced
 * (BlobDirectory.commit). Only then is the event's hold released. Crash at
 * any point before the rename leaves only a temp file, deleted at the next
 * start; the durable cursor never passed the event, so the re-stream on the
 * next connection saves it again.
 *
 * Nothing here waits for the apply loop and the apply loop never waits for
 * this: the empty transaction of a blob event applies at once, and only the
 * durable cursor waits (DurabilityTracker holds). Memory is bounded by the
 * primary's BLOB_ACK credit: a chunk is acknowledged once it is written.
 *
 * Operations on one blob id run in event order (a per-id chain reserved at
 * announcement), so a delete never overtakes the put before it and a put
 * never resurrects a blob deleted after it.
 *
 * A failed save (write error, checksum or size mismatch, no progress for
 * `stallTimeoutMs`) latches a gap: the durable cursor holds below the event
 * for the rest of the connection, transactions keep applying, and `gap` is
 * emitted so the client reconnects (after its delay) and the re-stream from
 * the durable seq saves the blob. There is no other repair path.
 */
import { type Hash, createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import {
  type BlobAckOutcome,
  type BlobBeginMessage,
  type BlobChunkMessage,
  BlobChecksumError,
  type BlobDeleteMessage,
  type BlobEndMessage,
  type BlobGoneMessage,
  BlobIncompleteError,
  BlobSaveFailedError,
  UnexpectedMessageError,
  WalwireError,
  chunkContentCrc,
} from '@walwire/protocol';
import { BlobDirectory, type BlobTemp, type Logger, failpoint } from '@walwire/runtime';
import type { DurabilityTracker } from './durability-tracker.js';

/** Reports a job's progress or outcome to the primary (BLOB_ACK). */
export type BlobAckFn = (outcome: BlobAckOutcome, bytes: number) => void;

export interface BlobWriterStatus {
  /** Blobs announced and not yet saved, failed or skipped. */
  readonly inFlight: number;
  /** Content bytes received into temp files by jobs in flight. */
  readonly inFlightBytes: number;
  readonly saved: number;
  readonly savedBytes: number;
  readonly present: number;
  readonly deleted: number;
  readonly gone: number;
  readonly failures: number;
  /** Live blobs on disk and their bytes. */
  readonly count: number;
  readonly bytes: number;
  /** Seq of the latched gap, or null. */
  readonly gapSeq: number | null;
  readonly lastFailure: { readonly seq: number; readonly blobId: string; readonly code: string; readonly message: string; readonly at: number } | null;
}

export interface BlobWriterEvents {
  /** A save failed and a gap is latched: the client should reconnect (after its delay). */
  gap: [{ readonly seq: number; readonly blobId: string; readonly error: WalwireError }];
  /** The tracker may allow a higher durable seq: write it. */
  release: [];
}

interface Job {
  readonly key: string;
  readonly seq: number;
  readonly blobId: string;
  readonly size: number;
  readonly sha256: string;
  readonly generation: string;
  /** Part of a snapshot (bootstrap): no hold, failure recorded per snapshot. */
  readonly bootstrap: boolean;
  readonly ack: BlobAckFn;
  readonly hash: Hash;
  /** Resolves when the operations before this one on the same id are done. */
  readonly turn: Promise<void>;
  /** Ends this job's place in the per-id chain. */
  readonly finish: () => void;
  received: number;
  written: number;
  temp: BlobTemp | null;
  writes: Promise<void>;
  ended: boolean;
  done: boolean;
  lastProgressAt: number;
}

export class BlobWriter extends EventEmitter<BlobWriterEvents> {
  readonly ns: string;
  readonly files: BlobDirectory;
  readonly #durability: DurabilityTracker;
  readonly #log: Logger;
  readonly #stallTimeoutMs: number;
  readonly #jobs = new Map<string, Job>();
  /** Tail of each blob id's operation chain. */
  readonly #chains = new Map<string, Promise<void>>();
  /** Snapshots (`generation:seq`) whose bootstrap copy of some blob failed. */
  readonly #bootstrapFailed = new Set<string>();
  /** Per snapshot (`generation:seq`), the ids its bootstrap announced: the primary's blob set at that point. */
  readonly #bootstrapIds = new Map<string, Set<string>>();
  #saved = 0;
  #savedBytes = 0;
  #present = 0;
  #deleted = 0;
  #gone = 0;
  #failures = 0;
  #lastFailure: BlobWriterStatus['lastFailure'] = null;

  /** The namespace's current generation: a job of another one no longer moves the cursor. */
  readonly #generation: () => string | null;

  constructor(options: { ns: string; dir: string; durability: DurabilityTracker; logger: Logger; stallTimeoutMs: number; generation: () => string | null }) {
    super();
    this.#generation = options.generation;
    this.ns = options.ns;
    this.files = new BlobDirectory(options.dir);
    this.#durability = options.durability;
    this.#log = options.logger;
    this.#stallTimeoutMs = options.stallTimeoutMs;
  }

  get status(): BlobWriterStatus {
    let inFlightBytes = 0;
    for (const j of this.#jobs.values()) inFlightBytes += j.received;
    return {
      inFlight: this.#jobs.size,
      inFlightBytes,
      saved: this.#saved,
      savedBytes: this.#savedBytes,
      present: this.#present,
      deleted: this.#deleted,
      gone: this.#gone,
      failures: this.#failures,
      count: this.files.count,
      bytes: this.files.bytes,
      gapSeq: this.#durability.gapSeq,
      lastFailure: this.#lastFailure,
    };
  }

  /**
   * True when a bootstrap blob of the snapshot `generation` at `seq` failed
   * on this connection, or is still unfinished: the primary sends
   * SNAPSHOT_END only after every final BLOB_ACK, so an unfinished one is a
   * protocol breach the install must not paper over.
   */
  bootstrapFailed(generation: string, seq: number): boolean {
    if (this.#bootstrapFailed.has(`${generation}:${seq}`)) return true;
    for (const j of this.#jobs.values()) if (j.bootstrap && j.generation === generation && j.seq === seq && !j.done) return true;
    return false;
  }

  /** A new connection: forget the last one's bootstrap failures and sets (its streams are void). */
  startConnection(): void {
    this.#bootstrapFailed.clear();
    this.#bootstrapIds.clear();
  }

  /**
   * Before the snapshot `generation` at `seq` is installed (every bootstrap
   * copy is final by then): removes every blob its bootstrap did not
   * announce. Those were deleted on the primary before the snapshot's seq,
   * in events this replica will never receive (it skips them with the log).
   * Later events of the stream wait behind the install gate. Returns how
   * many were removed.
   */
  async pruneAfterBootstrap(generation: string, seq: number): Promise<number> {
    const keep = this.#bootstrapIds.get(`${generation}:${seq}`) ?? new Set<string>();
    this.#bootstrapIds.clear();
    const removed: string[] = [];
    for (const info of this.files.list()) {
      if (keep.has(info.id) || this.#chains.has(info.id)) continue;
      await this.files.remove(info.id);
      removed.push(info.id);
    }
    if (removed.length > 0) this.#log.info({ removed: removed.length, ids: removed.slice(0, 20), kept: keep.size, generation, seq }, 'bootstrap: removed blobs the primary no longer holds');
    return removed.length;
  }

  /** BLOB_BEGIN. `bootstrap` when it arrives inside a snapshot stream. */
  begin(m: BlobBeginMessage, bootstrap: boolean, ack: BlobAckFn): void {
    const key = `${m.seq}:${m.blobId}`;
    if (bootstrap) {
      const snapshot = `${m.generation}:${m.seq}`;
      let ids = this.#bootstrapIds.get(snapshot);
      if (ids === undefined) this.#bootstrapIds.set(snapshot, (ids = new Set()));
      ids.add(m.blobId);
    }
    if (this.#jobs.has(key)) throw new UnexpectedMessageError(`BLOB_BEGIN for ${this.ns} seq ${m.seq} blob ${m.blobId} while that blob is already streaming`);
    // At or below the durable seq (a save that finished after this
    // connection's HELLO was sent), or already saved with that content and
    // nothing pending on the id: no content needed.
    if ((!bootstrap && m.seq <= this.#durability.durableSeq) || (!this.#chains.has(m.blobId) && this.files.has(m.blobId, m.sha256))) {
      this.#present++;
      ack('present', m.size);
      return;
    }
    if (!bootstrap) this.#durability.hold(m.seq);
    const { turn, finish } = this.#reserve(m.blobId);
    const job: Job = {
      key,
      seq: m.seq,
      blobId: m.blobId,
      size: m.size,
      sha256: m.sha256,
      generation: m.generation,
      bootstrap,
      ack,
      hash: createHash('sha256'),
      turn,
      finish,
      received: 0,
      written: 0,
      temp: null,
      writes: Promise.resolve(),
      ended: false,
      done: false,
      lastProgressAt: Date.now(),
    };
    this.#jobs.set(key, job);
  }

  /** BLOB_CHUNK: verified, hashed in order, written to the temp file, then acknowledged. */
  chunk(m: BlobChunkMessage): void {
    const job = this.#jobs.get(`${m.seq}:${m.blobId}`);
    if (job === undefined || job.done) return; // skipped (present) or failed: chunks still in flight
    if (job.ended) throw new UnexpectedMessageError(`BLOB_CHUNK for ${this.ns} blob ${m.blobId} after BLOB_END`);
    const data = m.data;
    if (m.offset !== job.received) {
      this.#fail(job, new BlobIncompleteError(`chunk of blob ${m.blobId} (ns ${this.ns}, seq ${m.seq}) at offset ${m.offset}, expected ${job.received}`));
      return;
    }
    if (chunkContentCrc(m) !== m.crc) {
      this.#fail(job, new BlobChecksumError(`chunk of blob ${m.blobId} (ns ${this.ns}, seq ${m.seq}) at offset ${m.offset} fails its CRC-32`));
      return;
    }
    if (job.received + data.length > job.size) {
      this.#fail(job, new BlobIncompleteError(`blob ${m.blobId} (ns ${this.ns}, seq ${m.seq}) sent ${job.received + data.length} bytes, announced ${job.size}`));
      return;
    }
    job.hash.update(data);
    job.received += data.length;
    job.lastProgressAt = Date.now();
    const offset = m.offset;
    job.writes = job.writes.then(async () => {
      if (job.done) return;
      job.temp ??= await this.files.createTemp(job.blobId);
      await job.temp.write(data, offset);
      job.written = offset + data.length;
      job.lastProgressAt = Date.now();
      if (!job.done) job.ack('progress', job.written);
    });
    job.writes.catch((err: unknown) => this.#fail(job, this.#wrap(err, job)));
  }

  /** BLOB_END: verify, commit durably in the id's turn, release the hold. */
  end(m: BlobEndMessage): void {
    const job = this.#jobs.get(`${m.seq}:${m.blobId}`);
    if (job === undefined || job.done) return;
    job.ended = true;
    void (async () => {
      try {
        await job.writes;
        if (job.done) return;
        if (job.received !== job.size) throw new BlobIncompleteError(`blob ${job.blobId} (ns ${this.ns}, seq ${job.seq}) ended after ${job.received} of ${job.size} bytes`);
        const digest = job.hash.digest('hex');
        if (digest !== job.sha256) throw new BlobChecksumError(`blob ${job.blobId} (ns ${this.ns}, seq ${job.seq}) hashes to ${digest}, announced ${job.sha256}`);
        await job.turn;
        if (job.done) return;
        failpoint('replica.blob.save');
        job.temp ??= await this.files.createTemp(job.blobId); // an empty blob has no chunks
        const temp = job.temp;
        job.temp = null;
        await this.files.commit(temp, job.blobId, job.sha256, job.size);
        this.#saved++;
        this.#savedBytes += job.size;
        this.#complete(job);
        job.ack('saved', job.size);
        this.#log.debug({ seq: job.seq, blobId: job.blobId, size: job.size, bootstrap: job.bootstrap }, 'blob saved');
      } catch (err) {
        this.#fail(job, this.#wrap(err, job));
      }
    })();
  }

  /** BLOB_GONE: the primary no longer has this version; skip it. */
  gone(m: BlobGoneMessage): void {
    const job = this.#jobs.get(`${m.seq}:${m.blobId}`);
    if (job === undefined || job.done) return;
    this.#gone++;
    this.#log.info({ seq: m.seq, blobId: m.blobId, reason: m.reason }, 'blob is gone on the primary; skipped');
    void this.#discard(job);
    this.#complete(job);
  }

  /** BLOB_DELETE: remove the blob in its id's turn, then release the event. */
  delete(m: BlobDeleteMessage): void {
    if (m.seq <= this.#durability.durableSeq) return; // done before this connection's HELLO went out
    this.#durability.hold(m.seq);
    const { turn, finish } = this.#reserve(m.blobId);
    void (async () => {
      try {
        await turn;
        const removed = await this.files.remove(m.blobId);
        if (removed !== undefined) {
          this.#deleted++;
          this.#log.info({ seq: m.seq, blobId: m.blobId }, 'blob deleted');
        }
        this.#durability.release(m.seq);
        this.emit('release');
      } catch (err) {
        const e = err instanceof WalwireError ? err : new BlobSaveFailedError(`deleting blob ${m.blobId} (ns ${this.ns}, seq ${m.seq}) failed: ${(err as Error).message}`);
        this.#latch(m.seq, m.blobId, e);
      } finally {
        finish();
      }
    })();
  }

  /**
   * The connection closed, or a snapshot replaces the stream: jobs that have
   * not reached their commit are abandoned (temp files deleted). Their holds
   * stay until the next connection's startStream turns them into its
   * barrier, or the snapshot's install resets the tracker.
   */
  abortAll(): void {
    for (const job of this.#jobs.values()) {
      if (job.ended) continue; // committing: let it finish
      job.done = true;
      this.#jobs.delete(job.key);
      void this.#discard(job);
      job.finish();
    }
  }

  /** Fails jobs that received content but made no progress for stallTimeoutMs. */
  checkStalls(now: number): void {
    for (const job of this.#jobs.values()) {
      if (job.done || job.received === 0 || job.ended) continue;
      if (now - job.lastProgressAt > this.#stallTimeoutMs) {
        this.#fail(job, new BlobSaveFailedError(`blob ${job.blobId} (ns ${this.ns}, seq ${job.seq}) made no progress for ${now - job.lastProgressAt} ms (stallTimeoutMs ${this.#stallTimeoutMs}, ${job.received} of ${job.size} bytes)`));
      }
    }
  }

  #reserve(id: string): { turn: Promise<void>; finish: () => void } {
    const turn = this.#chains.get(id) ?? Promise.resolve();
    let finish = (): void => {};
    const mine = new Promise<void>((resolve) => (finish = resolve));
    this.#chains.set(id, mine);
    void mine.then(() => {
      if (this.#chains.get(id) === mine) this.#chains.delete(id);
    });
    return { turn, finish };
  }

  #complete(job: Job): void {
    job.done = true;
    this.#jobs.delete(job.key);
    job.finish();
    if (!job.bootstrap && job.generation === this.#generation()) {
      this.#durability.release(job.seq);
      this.emit('release');
    }
  }

  #fail(job: Job, err: WalwireError): void {
    if (job.done) return;
    job.done = true;
    this.#jobs.delete(job.key);
    this.#failures++;
    this.#lastFailure = { seq: job.seq, blobId: job.blobId, code: err.code, message: err.message, at: Date.now() };
    void this.#discard(job).finally(() => job.finish());
    job.ack('failed', job.written);
    if (job.bootstrap) {
      this.#bootstrapFailed.add(`${job.generation}:${job.seq}`);
      this.#log.warn({ seq: job.seq, blobId: job.blobId, code: err.code, err: err.message }, 'bootstrap blob save failed; the snapshot is not installed until a re-stream saves it');
      this.emit('gap', { seq: job.seq, blobId: job.blobId, error: err });
      return;
    }
    // A job of a generation a snapshot has replaced holds nothing any more.
    if (job.generation === this.#generation()) this.#latch(job.seq, job.blobId, err);
  }

  #latch(seq: number, blobId: string, err: WalwireError): void {
    this.#durability.latchGap(seq);
    this.#log.warn({ seq, blobId, code: err.code, err: err.message, durableSeq: this.#durability.durableSeq }, 'blob save failed; durable cursor held below it until the re-stream saves it');
    this.emit('gap', { seq, blobId, error: err });
  }

  async #discard(job: Job): Promise<void> {
    await job.writes.catch(() => {});
    const temp = job.temp;
    job.temp = null;
    if (temp !== null) await this.files.discard(temp).catch(() => {});
  }

  #wrap(err: unknown, job: Job): WalwireError {
    if (err instanceof WalwireError) return err;
    return new BlobSaveFailedError(`saving blob ${job.blobId} (ns ${this.ns}, seq ${job.seq}) failed: ${(err as Error).message}`, { cause: err });
  }
}
