/**
 * The main-thread side of a namespace's apply worker: starts the worker,
 * sends it requests one at a time and turns its replies into promises and
 * typed errors. It also packs each batch's pages into one buffer that is
 * transferred, not cloned, to the worker.
 *
 * The worker runs `BEGIN EXCLUSIVE` and every sync of the journal protocol,
 * so none of it ever blocks this thread's event loop.
 */
import { Worker } from 'node:worker_threads';
import { ApplyFailedError, InvalidTxnError, type Txn, errorFromWire } from '@walwire/protocol';
import type { ApplyResult, ApplyWorkerData, InstallImage, InstallResult, PackedBatch, RecoverResult, StagedChunks, WorkerEvent, WorkerRequest } from './apply-messages.js';
import type { CursorRecord } from './cursor-store.js';
import { keptDatabaseFd } from './database-file.js';

type Pending = { resolve: (value: unknown) => void; reject: (err: Error) => void };

/** Distributive Omit, so each request variant keeps its own fields. */
type RequestBody = WorkerRequest extends infer R ? (R extends WorkerRequest ? Omit<R, 'id'> : never) : never;

/**
 * The apply worker's young generation cap. Its allocations are small and
 * short-lived (batches arrive as transferred buffers), so V8's default,
 * sized for the main thread, only let the worker's heap grow: the replica's
 * RSS was 4–10 MB higher with it and apply throughput the same (replica and
 * blob benchmarks, docs/benchmarks.md).
 */
const APPLY_WORKER_YOUNG_GENERATION_MB = 4;

export class Applier {
  readonly #worker: Worker;
  readonly #abortFlag = new Int32Array(new SharedArrayBuffer(4));
  readonly #fdCell = new Int32Array(new SharedArrayBuffer(8));
  readonly #dbPath: string;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #dead: Error | null = null;
  /** Called (on this thread) while the worker waits for readers to release their locks. */
  onLockWait: (waitedMs: number) => void = () => {};

  constructor(data: Omit<ApplyWorkerData, 'abortFlag' | 'fdCell'>) {
    this.#dbPath = data.dbPath;
    this.#worker = new Worker(new URL('./apply-worker.js', import.meta.url), {
      workerData: { ...data, abortFlag: this.#abortFlag, fdCell: this.#fdCell, walwireApplyWorker: true },
      resourceLimits: { maxYoungGenerationSizeMb: APPLY_WORKER_YOUNG_GENERATION_MB },
    });
    this.#worker.on('message', (event: WorkerEvent) => this.#onEvent(event));
    this.#worker.on('error', (err) => this.#fail(new ApplyFailedError(`apply worker crashed: ${err.message}`, { cause: err })));
    this.#worker.on('exit', (code) => this.#fail(new ApplyFailedError(`apply worker exited with code ${code}`)));
  }

  recover(): Promise<RecoverResult> {
    return this.#request({ kind: 'recover' }) as Promise<RecoverResult>;
  }

  /** Applies txns (already ordered) as one batch. `durableCap` bounds the durable seq recorded with it. */
  apply(generation: string, txns: readonly Txn[], durableCap: number, settle: boolean): Promise<ApplyResult> {
    const batch = packBatch(txns);
    return this.#request({ kind: 'apply', generation, batch, durableCap, settle }, [batch.pgnos.buffer as ArrayBuffer, batch.data.buffer as ArrayBuffer]) as Promise<ApplyResult>;
  }

  /** Replaces the database with a verified snapshot image (ApplyWorker.install). */
  install(image: InstallImage): Promise<InstallResult> {
    return this.#request({ kind: 'install', image }) as Promise<InstallResult>;
  }

  /** Verifies and hashes the snapshot chunks staged so far (ApplyWorker.verifyStaged); resolves with the count verified. */
  verifyStaged(chunks: StagedChunks): Promise<number> {
    return this.#request({ kind: 'verify-staged', chunks }) as Promise<number>;
  }

  /** Writes a deferred post-commit cursor record (ApplyWorker.settle). */
  settle(): Promise<CursorRecord> {
    return this.#request({ kind: 'settle' }) as Promise<CursorRecord>;
  }

  setDurable(durableSeq: number): Promise<CursorRecord> {
    return this.#request({ kind: 'set-durable', durableSeq }) as Promise<CursorRecord>;
  }

  /** Makes a batch that is waiting for readers' locks give up (ClosedError) at its next attempt. */
  abortLockWait(): void {
    Atomics.store(this.#abortFlag, 0, 1);
  }

  /** Closes the worker's SQLite connection and ends the thread. */
  async close(): Promise<void> {
    if (this.#dead === null) {
      try {
        await this.#request({ kind: 'close' });
      } catch {
        // already failing; terminate below
      }
    }
    await this.#worker.terminate();
  }

  #request(body: RequestBody, transfer: ArrayBuffer[] = []): Promise<unknown> {
    if (this.#dead !== null) return Promise.reject(this.#dead);
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ ...body, id } as WorkerRequest, transfer);
    });
  }

  #onEvent(event: WorkerEvent): void {
    if (event.kind === 'lock-wait') {
      this.onLockWait(event.waitedMs);
      return;
    }
    if (event.kind === 'fd-needed') {
      // Opened on this thread so that it outlives the worker (see ApplyWorker.#open).
      let fd = -1;
      try {
        fd = keptDatabaseFd(this.#dbPath);
      } catch {
        fd = -1;
      }
      Atomics.store(this.#fdCell, 1, fd);
      Atomics.store(this.#fdCell, 0, 1);
      Atomics.notify(this.#fdCell, 0);
      return;
    }
    const waiter = this.#pending.get(event.id);
    if (waiter === undefined) return;
    this.#pending.delete(event.id);
    if (event.ok) waiter.resolve(event.result);
    else waiter.reject(errorFromWire(event.error.code, event.error.message));
  }

  #fail(err: Error): void {
    if (this.#dead === null) this.#dead = err;
    for (const waiter of this.#pending.values()) waiter.reject(err);
    this.#pending.clear();
  }
}

/** Copies the pages of `txns` into one transferable buffer. */
export function packBatch(txns: readonly Txn[]): PackedBatch {
  let pageCount = 0;
  let pageSize = 0;
  for (const t of txns) {
    for (const p of t.pages) {
      if (pageSize === 0) pageSize = p.data.length;
      else if (p.data.length !== pageSize) {
        throw new InvalidTxnError(`seq ${t.seq} page ${p.pgno} has ${p.data.length} bytes, other pages of the batch have ${pageSize}`);
      }
      pageCount++;
    }
  }
  const pgnos = new Uint32Array(pageCount);
  const data = new Uint8Array(pageCount * pageSize);
  let k = 0;
  for (const t of txns) {
    for (const p of t.pages) {
      pgnos[k] = p.pgno;
      data.set(p.data, k * pageSize);
      k++;
    }
  }
  return {
    txns: txns.map((t) => ({ seq: t.seq, commitSize: t.commitSize, checksum: t.checksum, pageCount: t.pages.length })),
    pgnos,
    data,
    pageSize,
  };
}
