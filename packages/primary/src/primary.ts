/**
 * Primary: the library entry point of the primary daemon. It serves many
 * namespaces from one process, each isolated from the others (invariant 7):
 * a namespace that fails to open or fails later is reported and retried,
 * and never stops the rest.
 *
 * The streaming layer uses: `namespaces()`, `head(ns)`, `read(ns, from, to)`
 * (lazy, durable records only), the `record` event (one per new seq, in seq
 * order, after it is durable) and the `generation` event.
 */
import { EventEmitter } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ClosedError, InvalidOptionError, NamespaceExistsError, NamespaceUnavailableError, UnknownNamespaceError, assertNamespace, describe } from '@walwire/protocol';
import { silentLogger, writeFileDurable, type BlobInfo, type Logger } from '@walwire/runtime';
import type { BlobDeleteResult, BlobPutOptions, BlobPutResult, BlobStore } from './blob-store.js';
import { Checkpointer } from './checkpointer.js';
import type { BlobDeleteRecord, BlobPutRecord, LogRecord } from './log-record.js';
import { PrimaryNamespace, type GenerationEvent, type NamespaceStatus, type Position, type ResetResult } from './namespace.js';
import { resolvePrimaryOptions, type NamespaceConfig, type PrimaryOptions, type ResolvedPrimaryOptions } from './options.js';

export interface RecordEvent {
  readonly ns: string;
  readonly record: LogRecord;
}

export interface NamespaceErrorEvent {
  readonly ns: string;
  readonly error: Error;
}

export interface NamespaceStartedEvent {
  readonly ns: string;
  /** Attempts that failed before this one (0 when the first attempt succeeded). */
  readonly failedAttempts: number;
}

export interface DegradedEvent {
  readonly ns: string;
  readonly degraded: boolean;
  readonly error: string | null;
}

export interface PrimaryEvents {
  /** A new seq is durable in the log of `ns`. */
  record: [RecordEvent];
  /** A namespace started a new generation; replicas of older ones must bootstrap. */
  generation: [GenerationEvent];
  /** A namespace failed (it is retried; others are unaffected). */
  'namespace-error': [NamespaceErrorEvent];
  /** A namespace started: at start-up, created at runtime, or on a retry after it failed to start. */
  'namespace-started': [NamespaceStartedEvent];
  /** A namespace's checkpoints became degraded or recovered. */
  degraded: [DegradedEvent];
}

/**
 * `<dataDir>/namespaces.json`: namespaces created and deleted through the
 * admin API, applied over the `namespaces` option at every start.
 */
interface RuntimeNamespaces {
  readonly added: Record<string, Required<NamespaceConfig>>;
  readonly removed: string[];
}

const RUNTIME_NAMESPACES_FILE = 'namespaces.json';

export interface PrimaryStatus {
  readonly namespaces: readonly NamespaceStatus[];
}

interface FailedOpen {
  readonly error: Error;
  readonly attempts: number;
  readonly delayMs: number;
  readonly retryAt: number | null;
  readonly timer: NodeJS.Timeout | null;
}

export class Primary extends EventEmitter<PrimaryEvents> {
  readonly #options: ResolvedPrimaryOptions;
  readonly #logger: Logger;
  readonly #checkpointer: Checkpointer;
  readonly #namespaces = new Map<string, PrimaryNamespace>();
  /**
   * Configured namespaces that could not open: the error, and the timer of
   * the next attempt (a first delay of namespaceRetryMs, doubled after each
   * failure up to 30 s, as a running namespace retries).
   */
  readonly #failedToOpen = new Map<string, FailedOpen>();
  /** Opens in progress after start-up (retries, admin creates), awaited by stop() and removeNamespace(). */
  readonly #reopening = new Map<string, Promise<void>>();
  #stopped = false;

  #started = false;

  /**
   * Validates the options (WALWIRE_ERR_INVALID_OPTION) without touching any
   * file. Attach listeners, then call `start()`, so that events raised while
   * starting (a new generation, a namespace that fails) are not missed.
   */
  constructor(options: PrimaryOptions) {
    super();
    const resolved = resolvePrimaryOptions(options);
    const logger = options.logger ?? silentLogger();
    this.#options = resolved;
    this.#logger = logger;
    this.#checkpointer = new Checkpointer({
      concurrency: resolved.checkpointConcurrency,
      busyTimeoutMs: resolved.checkpointBusyTimeoutMs,
      backoffMs: resolved.checkpointBackoffMs,
      backoffMaxMs: resolved.checkpointBackoffMaxMs,
      degradedAfterErrors: resolved.degradedAfterErrors,
      logger,
      onDegraded: (ns, degraded, error) => this.emit('degraded', { ns, degraded, error }),
    });
  }

  /** `new Primary(options)` then `start()`, for callers that attach listeners later. */
  static async start(options: PrimaryOptions): Promise<Primary> {
    const primary = new Primary(options);
    await primary.start();
    return primary;
  }

  /**
   * Opens every namespace (in parallel) and starts tailing. A namespace that
   * fails to open is logged, reported by `status()` and emitted as
   * `namespace-error`; the others start anyway.
   */
  async start(): Promise<void> {
    if (this.#started) throw new ClosedError('primary was already started');
    this.#started = true;
    const runtime = this.#runtimeNamespaces();
    for (const name of runtime.removed) this.#configs.delete(name);
    for (const [name, config] of Object.entries(runtime.added)) this.#configs.set(name, config);
    await Promise.all([...this.#options.namespaces.keys()].map((name) => this.#open(name)));
    this.#checkpointer.warm();
  }

  /**
   * Opens one namespace. A failure is recorded, emitted and, with `retry`
   * (every open but an admin create, which reports its failure to the
   * caller instead), retried later: until then the namespace answers
   * WALWIRE_ERR_NAMESPACE_UNAVAILABLE (HTTP 503), so clients retry instead of
   * taking it for one that does not exist.
   */
  async #open(name: string, retry = true): Promise<void> {
    // The configuration this open is for: a remove (and maybe a new add of
    // the name) while it runs makes its outcome void.
    const config = this.#configs.get(name);
    const current = (): boolean => !this.#stopped && config !== undefined && this.#configs.get(name) === config;
    try {
      const ns = await PrimaryNamespace.open(
        name,
        this.#options,
        this.#checkpointer,
        {
          onRecord: (n, record) => this.emit('record', { ns: n, record }),
          onGeneration: (event) => this.emit('generation', event),
          onError: (n, error) => this.emit('namespace-error', { ns: n, error }),
        },
        this.#logger.child({ ns: name }),
      );
      if (!current()) {
        // Stopped, or removed (and maybe created again), while it opened.
        await ns.close();
        return;
      }
      const failed = this.#failedToOpen.get(name);
      this.#failedToOpen.delete(name);
      this.#namespaces.set(name, ns);
      const head = ns.head();
      this.#logger.info({ ns: name, generation: head.generation, seq: head.seq, ...(failed ? { failedAttempts: failed.attempts } : {}) }, 'namespace started');
      this.emit('namespace-started', { ns: name, failedAttempts: failed?.attempts ?? 0 });
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      if (!current()) {
        this.#logger.warn({ ns: name, err: error.message }, 'namespace failed to start after it was removed or the primary stopped; ignored');
        return;
      }
      const before = this.#failedToOpen.get(name);
      const attempts = (before?.attempts ?? 0) + 1;
      const delayMs = before === undefined ? this.#options.namespaceRetryMs : Math.min(before.delayMs * 2, 30_000);
      const timer = retry ? setTimeout(() => this.#retryOpen(name), delayMs) : null;
      timer?.unref();
      this.#failedToOpen.set(name, { error, attempts, delayMs, retryAt: retry ? Date.now() + delayMs : null, timer });
      this.#logger.error(
        { ns: name, err: error.message, attempts, ...(retry ? { retryInMs: delayMs } : {}) },
        retry ? 'namespace failed to start; retrying later, other namespaces are unaffected' : 'namespace failed to start; other namespaces are unaffected',
      );
      this.emit('namespace-error', { ns: name, error });
    }
  }

  #retryOpen(name: string): void {
    if (this.#stopped || !this.#configs.has(name) || this.#namespaces.has(name) || this.#reopening.has(name)) return;
    const attempt = this.#open(name).finally(() => this.#reopening.delete(name));
    this.#reopening.set(name, attempt);
  }

  /** Why a configured namespace is not running, with when it is tried again. */
  #unavailable(name: string, failed: FailedOpen): NamespaceUnavailableError {
    const next = failed.retryAt === null ? 'not retried' : `next attempt in ${Math.max(0, failed.retryAt - Date.now())} ms`;
    return new NamespaceUnavailableError(`namespace ${name} is not running: it failed to start (${failed.error.message}); ${failed.attempts} failed attempt(s), ${next}`);
  }

  /** The namespace configurations (the option's, plus runtime changes); PrimaryNamespace.open reads them too. */
  get #configs(): Map<string, Required<NamespaceConfig>> {
    return this.#options.namespaces as Map<string, Required<NamespaceConfig>>;
  }

  #runtimeNamespaces(): RuntimeNamespaces {
    const path = join(this.#options.dataDir, RUNTIME_NAMESPACES_FILE);
    if (!existsSync(path)) return { added: {}, removed: [] };
    const parsed = JSON.parse(readFileSync(path, 'utf8')) as Partial<RuntimeNamespaces>;
    return { added: parsed.added ?? {}, removed: parsed.removed ?? [] };
  }

  /** Records an admin change durably, so the next start opens the same set. */
  async #saveRuntimeNamespaces(change: { add?: [string, Required<NamespaceConfig>]; remove?: string }): Promise<void> {
    const current = this.#runtimeNamespaces();
    const added = { ...current.added };
    let removed = current.removed.filter((n) => n !== change.add?.[0]);
    if (change.add) added[change.add[0]] = change.add[1];
    if (change.remove !== undefined) {
      delete added[change.remove];
      removed = [...removed.filter((n) => n !== change.remove), change.remove];
    }
    await mkdir(this.#options.dataDir, { recursive: true });
    await writeFileDurable(join(this.#options.dataDir, RUNTIME_NAMESPACES_FILE), `${JSON.stringify({ added, removed }, null, 2)}\n`);
  }

  /**
   * Creates a namespace at runtime (admin API): opens (or creates) the
   * database, starts its first generation and tails it. Other namespaces
   * are untouched. Remembered in `<dataDir>/namespaces.json`, so the next
   * start opens it too. WALWIRE_ERR_NAMESPACE_EXISTS when the name is taken;
   * when it cannot open, the error is thrown and nothing is remembered.
   */
  async addNamespace(name: string, config: NamespaceConfig): Promise<Position> {
    if (this.#stopped || !this.#started) throw new ClosedError('primary is not running');
    assertNamespace(name);
    if (typeof config?.path !== 'string' || config.path === '') throw new InvalidOptionError(`namespace ${name}: path must be a non-empty path, received ${describe(config?.path)}`);
    if (config.create !== undefined && typeof config.create !== 'boolean') throw new InvalidOptionError(`namespace ${name}: create must be a boolean, received ${describe(config.create)}`);
    if (this.#configs.has(name)) throw new NamespaceExistsError(`namespace ${name} already exists on this primary`);
    const resolved = { path: config.path, create: config.create ?? true };
    this.#configs.set(name, resolved);
    // Registered before the open starts, so that a stop() or a removal that
    // begins at any point of it waits for it.
    let opened = (): void => {};
    const opening = new Promise<void>((resolve) => (opened = resolve));
    this.#reopening.set(name, opening);
    try {
      await this.#open(name, false);
    } finally {
      opened();
      if (this.#reopening.get(name) === opening) this.#reopening.delete(name);
    }
    // Not remembered when the primary stopped or the name was deleted meanwhile (the open closed itself).
    if (this.#stopped) throw new ClosedError(`primary stopped while namespace ${name} was being created`);
    if (this.#configs.get(name) !== resolved) throw new UnknownNamespaceError(`namespace ${name} was deleted while it was being created`);
    const failed = this.#failedToOpen.get(name);
    if (failed !== undefined) {
      this.#failedToOpen.delete(name);
      this.#configs.delete(name);
      throw failed.error;
    }
    await this.#saveRuntimeNamespaces({ add: [name, resolved] });
    return this.head(name);
  }

  /**
   * Deletes a namespace at runtime (admin API): stops tailing, waits for its
   * checkpoint, closes its log and removes `<dataDir>/<name>` (log segments
   * and snapshot images). The database file is the application's and stays.
   * Other namespaces are untouched.
   */
  async removeNamespace(name: string): Promise<void> {
    if (this.#stopped || !this.#started) throw new ClosedError('primary is not running');
    if (!this.#configs.has(name)) throw new UnknownNamespaceError(`namespace ${JSON.stringify(name)} is not configured on this primary`);
    // An open in flight finishes first (it runs the namespace or records its
    // failure with a retry timer, cleared here), while the name is still
    // taken, so that no create of the same name can start meanwhile. A timer
    // exists only after a failed open, which no longer is in flight.
    await this.#reopening.get(name);
    clearTimeout(this.#failedToOpen.get(name)?.timer ?? undefined);
    this.#failedToOpen.delete(name);
    this.#configs.delete(name);
    const ns = this.#namespaces.get(name);
    this.#namespaces.delete(name);
    if (ns !== undefined) {
      await ns.stopTailing().catch(() => undefined);
      while (this.#checkpointer.status(name)?.running === true) await new Promise((r) => setTimeout(r, 5));
      await ns.close();
    }
    await this.#saveRuntimeNamespaces({ remove: name });
    await rm(join(this.#options.dataDir, name), { recursive: true, force: true });
    this.#logger.info({ ns: name }, 'namespace deleted');
  }

  /** Configured namespace names, sorted. */
  namespaces(): readonly string[] {
    return [...this.#configs.keys()].sort();
  }

  /**
   * The running namespace. WALWIRE_ERR_UNKNOWN_NAMESPACE when it is not
   * configured; WALWIRE_ERR_NAMESPACE_UNAVAILABLE when it is but failed to
   * start (it is retried) or is still starting.
   */
  namespace(name: string): PrimaryNamespace {
    if (this.#stopped) throw new ClosedError('primary is stopped');
    const ns = this.#namespaces.get(name);
    if (ns === undefined) {
      const failed = this.#failedToOpen.get(name);
      if (failed !== undefined) throw this.#unavailable(name, failed);
      if (this.#configs.has(name)) throw new NamespaceUnavailableError(`namespace ${name} is not running yet: it is starting`);
      throw new UnknownNamespaceError(`namespace ${JSON.stringify(name)} is not configured on this primary`);
    }
    return ns;
  }

  /** Newest durable position of `ns`: {generation, seq, checksum}. */
  head(name: string): Position {
    return this.namespace(name).head();
  }

  /**
   * Durable records of the current generation with from ≤ seq ≤ to, read
   * lazily. WALWIRE_ERR_SNAPSHOT_REQUIRED when `from` is no longer retained.
   */
  read(name: string, from: number, to?: number): AsyncGenerator<LogRecord> {
    return this.namespace(name).log.read(from, to);
  }

  /** Appends a blob-put event as its own seq (issue 6 builds on this). */
  appendBlobPut(name: string, event: { blobId: string; size: number; sha256: string }): Promise<BlobPutRecord> {
    return this.namespace(name).appendBlobPut(event) as Promise<BlobPutRecord>;
  }

  /** Appends a blob-delete event as its own seq. */
  appendBlobDelete(name: string, blobId: string): Promise<BlobDeleteRecord> {
    return this.namespace(name).appendBlobDelete(blobId) as Promise<BlobDeleteRecord>;
  }

  /**
   * Stores a blob in namespace `name` and appends its BLOB_PUT event; resolves
   * once both are durable (BlobStore.put: errors, crash behaviour). Without
   * `opts.id` the id is the content's SHA-256.
   */
  async putBlob(name: string, body: AsyncIterable<Uint8Array> | Uint8Array, opts: BlobPutOptions = {}): Promise<BlobPutResult> {
    return this.namespace(name).blobs.put(body, opts);
  }

  /** The live blob `id` of `name` (id, sha256, size, path), or undefined. */
  getBlob(name: string, id: string): BlobInfo | undefined {
    return this.namespace(name).blobs.get(id);
  }

  /** Appends BLOB_DELETE, then removes the blob; WALWIRE_ERR_NOT_FOUND when absent. */
  async deleteBlob(name: string, id: string): Promise<BlobDeleteResult> {
    return this.namespace(name).blobs.delete(id);
  }

  /** The blob store of `name` (list, status, and `files` for readers). */
  blobs(name: string): BlobStore {
    return this.namespace(name).blobs;
  }

  /**
   * Starts a new generation of `name` from its live database (see
   * PrimaryNamespace.resetReplication); other namespaces are untouched.
   */
  resetReplication(name: string): Promise<ResetResult> {
    return this.namespace(name).resetReplication();
  }

  /** Retention: drops log segments entirely below `seq`. Returns segments removed. */
  truncateLogBefore(name: string, seq: number): Promise<number> {
    return this.namespace(name).log.truncateBefore(seq);
  }

  status(): PrimaryStatus {
    const out: NamespaceStatus[] = [];
    for (const name of this.namespaces()) {
      const ns = this.#namespaces.get(name);
      if (ns !== undefined) out.push(ns.status());
      else {
        const failed = this.#failedToOpen.get(name);
        const err = failed === undefined ? undefined : this.#unavailable(name, failed);
        out.push({
          name,
          path: this.#configs.get(name)!.path,
          state: 'failed',
          generation: null,
          headSeq: 0,
          firstSeq: 1,
          checksum: null,
          commitSize: 0,
          walBytes: 0,
          bufferBytes: 0,
          lastError: err ? `${err.code}: ${err.message}` : null,
          checkpoint: null,
          blobs: null,
        });
      }
    }
    return { namespaces: out };
  }

  /**
   * Clean shutdown: stop tailing (after a last read), drain in-flight
   * checkpoints, then close every log (removing its sentinel) and connection.
   */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const failed of this.#failedToOpen.values()) clearTimeout(failed.timer ?? undefined);
    await Promise.all(this.#reopening.values());
    const all = [...this.#namespaces.values()];
    await Promise.all(all.map((ns) => ns.stopTailing().catch(() => undefined)));
    await this.#checkpointer.close();
    await Promise.all(all.map((ns) => ns.close().catch((err: unknown) => this.#logger.error({ ns: ns.name, err: (err as Error).message }, 'close failed'))));
    this.#namespaces.clear();
    this.#logger.info('primary stopped');
  }
}
