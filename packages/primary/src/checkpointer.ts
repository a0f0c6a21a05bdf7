/**
 * Checkpointer: the daemon owns checkpoints (design.md). Namespaces ask for
 * one when enough frames were logged; at most `concurrency` run at once
 * across all namespaces (p-queue), each SQLite call in a worker thread, so
 * replication on the main event loop never stalls behind a checkpoint.
 *
 * A failed checkpoint is retried with exponential backoff. After
 * `degradedAfterErrors` consecutive failures the namespace is marked
 * degraded (status and a warning log) until one succeeds; the process never
 * crashes because of a checkpoint. Failures of one namespace never delay
 * another's beyond the shared concurrency bound (invariant 7).
 */
import { Worker } from 'node:worker_threads';
import PQueue from 'p-queue';
import { ClosedError } from '@walwire/protocol';
import { failpointAsync, type Logger } from '@walwire/runtime';
import type { CheckpointRequest, CheckpointResponse, QuickCheckRequest } from './checkpoint-worker.js';

export type CheckpointMode = 'PASSIVE' | 'TRUNCATE';

/** `PRAGMA wal_checkpoint` result: busy flag, frames in the WAL, frames copied. */
export interface CheckpointResult {
  readonly busy: number;
  readonly log: number;
  readonly checkpointed: number;
  /** Answer of a quick-check request (see quickCheckNow). */
  readonly check?: string;
}

/** Runs one SQLite checkpoint of `path` in a worker thread. */
export type RunCheckpoint = (path: string, mode: CheckpointMode) => Promise<CheckpointResult>;

/** A namespace's checkpoint procedure (it seals, logs and pins around the SQLite calls). */
export type CheckpointJob = (run: RunCheckpoint) => Promise<void>;

export interface CheckpointStatus {
  readonly degraded: boolean;
  readonly consecutiveErrors: number;
  readonly lastError: string | null;
  readonly lastSuccessAt: number | null;
  readonly completed: number;
  readonly running: boolean;
}

export interface CheckpointerOptions {
  readonly concurrency: number;
  readonly busyTimeoutMs: number;
  readonly backoffMs: number;
  readonly backoffMaxMs: number;
  readonly degradedAfterErrors: number;
  readonly logger: Logger;
  /** Called when a namespace becomes degraded or recovers. */
  readonly onDegraded?: (ns: string, degraded: boolean, error: string | null) => void;
}

interface NamespaceEntry {
  readonly job: CheckpointJob;
  queued: boolean;
  running: boolean;
  again: boolean;
  timer: NodeJS.Timeout | undefined;
  errors: number;
  degraded: boolean;
  lastError: string | null;
  lastSuccessAt: number | null;
  completed: number;
}

class WorkerSlot {
  readonly #worker: Worker;
  readonly #pending = new Map<number, { resolve: (r: CheckpointResult) => void; reject: (e: Error) => void }>();
  #nextId = 1;
  #dead: Error | undefined;

  constructor() {
    this.#worker = new Worker(new URL('./checkpoint-worker.js', import.meta.url));
    this.#worker.unref();
    this.#worker.on('message', (res: CheckpointResponse) => {
      const p = this.#pending.get(res.id);
      if (p === undefined) return;
      this.#pending.delete(res.id);
      if (res.ok) p.resolve({ busy: res.busy, log: res.log, checkpointed: res.checkpointed, ...(res.check === undefined ? {} : { check: res.check }) });
      else p.reject(Object.assign(new Error(res.message), { code: res.code }));
    });
    const fail = (err: Error): void => {
      this.#dead = err;
      for (const p of this.#pending.values()) p.reject(err);
      this.#pending.clear();
    };
    this.#worker.on('error', fail);
    this.#worker.on('exit', (code) => fail(new Error(`checkpoint worker exited with code ${code}`)));
  }

  get dead(): boolean {
    return this.#dead !== undefined;
  }

  call(req: Omit<CheckpointRequest, 'id'> | Omit<QuickCheckRequest, 'id'> | { op: 'close' }): Promise<CheckpointResult> {
    if (this.#dead !== undefined) return Promise.reject(this.#dead);
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ ...req, id });
    });
  }

  async close(): Promise<void> {
    if (this.#dead === undefined) await this.call({ op: 'close' }).catch(() => undefined);
    await this.#worker.terminate();
  }
}

export class Checkpointer {
  readonly #options: CheckpointerOptions;
  readonly #queue: PQueue;
  readonly #entries = new Map<string, NamespaceEntry>();
  readonly #idle: WorkerSlot[] = [];
  readonly #all = new Set<WorkerSlot>();
  #closed = false;

  constructor(options: CheckpointerOptions) {
    this.#options = options;
    this.#queue = new PQueue({ concurrency: options.concurrency });
  }

  /**
   * Starts one worker ahead of the first checkpoint (Primary.start calls
   * it once the namespaces are open): loading a thread and SQLite into it
   * took 40-50 ms of CPU at the first checkpoint, inside the first second
   * of writes, and about 10 MB of resident memory that the process keeps
   * once writes begin; it is paid at start-up instead. A worker that fails
   * to start is logged and replaced at the first request, as before.
   */
  warm(): void {
    if (this.#closed || this.#all.size > 0) return;
    try {
      const slot = new WorkerSlot();
      this.#all.add(slot);
      this.#idle.push(slot);
    } catch (err) {
      this.#options.logger.warn({ err: (err as Error).message }, 'checkpoint worker did not start; the first checkpoint starts one');
    }
  }

  /** Registers a namespace's checkpoint procedure. */
  register(ns: string, job: CheckpointJob): void {
    this.#entries.set(ns, {
      job,
      queued: false,
      running: false,
      again: false,
      timer: undefined,
      errors: 0,
      degraded: false,
      lastError: null,
      lastSuccessAt: null,
      completed: 0,
    });
  }

  /** Forgets a namespace; a queued run is skipped, a running one finishes. */
  unregister(ns: string): void {
    const e = this.#entries.get(ns);
    if (e?.timer !== undefined) clearTimeout(e.timer);
    this.#entries.delete(ns);
  }

  /** Asks for a checkpoint of `ns`; requests while one is queued or running coalesce. */
  schedule(ns: string): void {
    const e = this.#entries.get(ns);
    if (e === undefined || this.#closed) return;
    if (e.running) {
      e.again = true;
      return;
    }
    if (e.queued || e.timer !== undefined) return;
    e.queued = true;
    void this.#queue.add(() => this.#run(ns, e));
  }

  status(ns: string): CheckpointStatus | undefined {
    const e = this.#entries.get(ns);
    if (e === undefined) return undefined;
    return {
      degraded: e.degraded,
      consecutiveErrors: e.errors,
      lastError: e.lastError,
      lastSuccessAt: e.lastSuccessAt,
      completed: e.completed,
      running: e.running,
    };
  }

  /**
   * Runs one SQLite checkpoint now, outside the queue and its backoff
   * accounting: reset-replication calls it while holding the namespace's
   * write lock, so it must not wait behind other namespaces' jobs.
   */
  runNow(path: string, mode: CheckpointMode): Promise<CheckpointResult> {
    return this.#direct({ op: 'checkpoint', path, mode, busyTimeoutMs: this.#options.busyTimeoutMs });
  }

  /**
   * `PRAGMA quick_check` of `path` in a warm worker thread (starting a
   * thread would cost more than the check); "ok" when healthy.
   */
  async quickCheckNow(path: string): Promise<string> {
    return (await this.#direct({ op: 'quick-check', path, busyTimeoutMs: this.#options.busyTimeoutMs })).check ?? '';
  }

  async #direct(req: Omit<CheckpointRequest, 'id'> | Omit<QuickCheckRequest, 'id'>): Promise<CheckpointResult> {
    if (this.#closed) throw new ClosedError('checkpointer is closed');
    let slot = this.#idle.pop();
    if (slot === undefined || slot.dead) {
      slot = new WorkerSlot();
      this.#all.add(slot);
    }
    try {
      return await slot.call(req);
    } finally {
      if (slot.dead) this.#all.delete(slot);
      else this.#idle.push(slot);
    }
  }

  /** Waits for every queued and running checkpoint, then stops the workers. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const e of this.#entries.values()) {
      if (e.timer !== undefined) clearTimeout(e.timer);
      e.timer = undefined;
    }
    await this.#queue.onIdle();
    await Promise.all([...this.#all].map((w) => w.close()));
    this.#all.clear();
    this.#idle.length = 0;
  }

  async #run(ns: string, e: NamespaceEntry): Promise<void> {
    e.queued = false;
    if (this.#closed || this.#entries.get(ns) !== e) return;
    e.running = true;
    e.again = false;
    let slot = this.#idle.pop();
    if (slot === undefined || slot.dead) {
      slot = new WorkerSlot();
      this.#all.add(slot);
    }
    const worker = slot;
    const run: RunCheckpoint = (path, mode) => {
      if (this.#closed && mode === 'TRUNCATE') return Promise.reject(new ClosedError('checkpointer is closing'));
      return worker.call({ op: 'checkpoint', path, mode, busyTimeoutMs: this.#options.busyTimeoutMs });
    };
    try {
      await failpointAsync('primary.checkpoint');
      await failpointAsync(`primary.checkpoint.${ns}`);
      await e.job(run);
      e.completed++;
      e.lastSuccessAt = Date.now();
      if (e.degraded) {
        this.#options.logger.info({ ns }, 'checkpoint: namespace recovered from degraded state');
        this.#options.onDegraded?.(ns, false, null);
      }
      e.errors = 0;
      e.degraded = false;
      e.lastError = null;
    } catch (err) {
      e.errors++;
      e.lastError = `${(err as { code?: string }).code ?? 'ERR'}: ${(err as Error).message}`;
      const delay = Math.min(this.#options.backoffMs * 2 ** (e.errors - 1), this.#options.backoffMaxMs);
      this.#options.logger.warn({ ns, err: e.lastError, consecutiveErrors: e.errors, retryInMs: delay }, 'checkpoint failed');
      if (!e.degraded && e.errors >= this.#options.degradedAfterErrors) {
        e.degraded = true;
        this.#options.logger.error({ ns, consecutiveErrors: e.errors, err: e.lastError }, 'checkpoint: namespace degraded');
        this.#options.onDegraded?.(ns, true, e.lastError);
      }
      if (!this.#closed && this.#entries.get(ns) === e) {
        e.timer = setTimeout(() => {
          e.timer = undefined;
          this.schedule(ns);
        }, delay);
        e.timer.unref();
      }
    } finally {
      e.running = false;
      if (slot.dead) this.#all.delete(slot);
      else this.#idle.push(slot);
      if (e.again && e.timer === undefined) this.schedule(ns);
    }
  }
}
