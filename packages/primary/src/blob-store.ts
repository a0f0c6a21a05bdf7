/**
 * BlobStore: one namespace's blobs on the primary, in `<dataDir>/<ns>/blobs`
 * (layout and atomic save: runtime/blob-files.ts). Every change is a log
 * event (BLOB_PUT, BLOB_DELETE) with its own seq, which is how replicas learn
 * of it; the file is the content, the log is the history.
 *
 * Ordering rule: a BLOB_PUT is appended only after the file is durable, and a
 * BLOB_DELETE is appended before the file is removed. So a log event never
 * names content the primary cannot serve at the time it becomes durable
 * (the streamer reads `files.open(id, sha256)`, which also refuses a
 * version that was replaced since), and a crash can only leave a file
 * without an event, never an event without a file it describes.
 *
 * put(), and what a kill -9 between its steps leaves behind:
 * 1. stream the body into a temp file `.<id>.<random>.tmp`, hashing and
 *    counting; check size limit, declared size and sha256. Crash: a temp
 *    file, deleted at the next open (BlobDirectory removes stale temps). Any
 *    failure here discards the temp at once. Nothing is visible.
 *    Failpoint `primary.blob.before-commit` (temp complete and verified).
 * 2. (per-id lock from here) `files.commit`: fsync the temp, rename it to
 *    `<id>~<sha256>`, remove an older version, fsync the directory. Crash
 *    before the rename: as in 1. Crash after it: the blob is served whole
 *    (rename(2) is atomic) but no log event names it, so replicas do not
 *    have it yet. Failpoint `primary.blob.after-rename` (commit returned).
 * 3. append BLOB_PUT and wait until it is durable, then answer the client.
 *    The client saw no success for a crash before this point and retries;
 *    the retry finds the identical blob, re-fsyncs the directory, appends
 *    the BLOB_PUT (created: false), and the store and the log agree again.
 *    A crash after the append but before the answer: the retry appends a
 *    second BLOB_PUT for the same content, which replicas treat as a no-op.
 *
 * delete(), in the opposite order:
 * 1. append BLOB_DELETE (durable). Failpoint `primary.blob.after-delete-append`.
 * 2. `files.remove`: unlink, fsync the directory.
 * A crash between 1 and 2 leaves the file on the primary while the log (and
 * so every replica) says deleted; the primary still serves it until the
 * client, which saw no success, retries the DELETE: the file is still
 * indexed, so the retry appends another BLOB_DELETE (harmless) and removes
 * it. The reverse order would be worse: removing first and crashing before
 * the append leaves replicas holding a blob the primary no longer has, and
 * a retried DELETE would answer 404 and never heal it.
 *
 * Concurrency: puts and deletes of one id are serialized by a per-id promise
 * chain from the existence check to the log append, so two requests on one
 * id cannot interleave their rename, remove and append. Uploads themselves
 * (step 1) run outside the lock: temp names are unique, and a slow client
 * does not block others on the same id.
 */
import { createHash } from 'node:crypto';
import {
  BlobChecksumError,
  BlobExistsError,
  BlobIncompleteError,
  BlobTooLargeError,
  ClosedError,
  InvalidBlobIdError,
  InvalidOptionError,
  NotFoundError,
  WalwireError,
  describe,
  isBlobId,
  isSha256,
} from '@walwire/protocol';
import { BlobDirectory, type BlobInfo, failpointAsync, fsyncDir, silentLogger, type Logger } from '@walwire/runtime';

/** Where blob events go: the namespace's replication log. */
export interface BlobLog {
  appendBlobPut(event: { blobId: string; size: number; sha256: string }): Promise<{ readonly seq: number }>;
  appendBlobDelete(blobId: string): Promise<{ readonly seq: number }>;
}

export interface BlobStoreOptions {
  /** The blob directory, `<dataDir>/<ns>/blobs`. */
  readonly dir: string;
  /** Largest blob accepted, in bytes (PrimaryLimits.maxBlobBytes). */
  readonly maxBlobBytes: number;
  readonly log: BlobLog;
  readonly logger?: Logger;
}

export interface BlobPutOptions {
  /**
   * The blob id (`[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}`). An id of 64 lowercase
   * hex digits is content-addressed: it must equal the content's SHA-256.
   * @default the content's SHA-256
   */
  readonly id?: string;
  /** Expected SHA-256 of the content (64 hex digits); a mismatch is WALWIRE_ERR_BLOB_CHECKSUM. */
  readonly sha256?: string;
  /** Declared length (e.g. content-length); a body of another length is WALWIRE_ERR_BLOB_INCOMPLETE. */
  readonly size?: number;
}

export interface BlobPutResult {
  readonly id: string;
  readonly sha256: string;
  readonly size: number;
  /** Seq of the BLOB_PUT event. */
  readonly seq: number;
  /** False when the id already held identical content (the event is appended anyway). */
  readonly created: boolean;
}

export interface BlobDeleteResult {
  readonly id: string;
  /** Seq of the BLOB_DELETE event. */
  readonly seq: number;
}

export interface BlobStoreStatus {
  /** Live blobs. */
  readonly count: number;
  /** Total bytes of live blobs. */
  readonly bytes: number;
  /** Successful puts since start (including identical re-puts). */
  readonly puts: number;
  /** Successful deletes since start. */
  readonly deletes: number;
  /** Failed puts and deletes since start, by error code (every code of BLOB_FAILURE_CODES, from 0). */
  readonly failures: Readonly<Record<string, number>>;
}

/**
 * Every code a put or delete fails with. Failure counters start at 0 for
 * each, so metrics have every series from the start (an alert on a rate
 * needs the series before the first failure).
 */
export const BLOB_FAILURE_CODES: readonly string[] = [
  'WALWIRE_ERR_INVALID_BLOB_ID',
  'WALWIRE_ERR_INVALID_OPTION',
  'WALWIRE_ERR_BLOB_CHECKSUM',
  'WALWIRE_ERR_BLOB_TOO_LARGE',
  'WALWIRE_ERR_BLOB_INCOMPLETE',
  'WALWIRE_ERR_BLOB_EXISTS',
  'WALWIRE_ERR_NOT_FOUND',
  'WALWIRE_ERR_CLOSED',
  'WALWIRE_ERR_INTERNAL',
];

/** Accepts a whole buffer as a one-chunk body. */
async function* once(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}

export class BlobStore {
  /** The files; the blob streamer reads through `files.open(id, sha256)`. */
  readonly files: BlobDirectory;
  readonly maxBlobBytes: number;
  readonly #log: BlobLog;
  readonly #logger: Logger;
  /** Tail of each id's chain of puts and deletes; only ever resolves. */
  readonly #locks = new Map<string, Promise<void>>();
  readonly #failures = new Map<string, number>(BLOB_FAILURE_CODES.map((code) => [code, 0]));
  #puts = 0;
  #deletes = 0;
  #closed = false;

  /** Opens (creating) the directory, deleting temps a crash left behind. */
  constructor(options: BlobStoreOptions) {
    this.files = new BlobDirectory(options.dir);
    this.maxBlobBytes = options.maxBlobBytes;
    this.#log = options.log;
    this.#logger = options.logger ?? silentLogger();
  }

  /** The live blob `id`, or undefined. WALWIRE_ERR_INVALID_BLOB_ID for a malformed id. */
  get(id: string): BlobInfo | undefined {
    assertBlobId(id);
    return this.files.get(id);
  }

  /** Live blobs, sorted by id. */
  list(): BlobInfo[] {
    return this.files.list().sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  status(): BlobStoreStatus {
    return {
      count: this.files.count,
      bytes: this.files.bytes,
      puts: this.#puts,
      deletes: this.#deletes,
      failures: Object.fromEntries(this.#failures),
    };
  }

  /**
   * Stores a blob and appends its BLOB_PUT event; resolves once both are
   * durable. See the file comment for the steps and crash behaviour.
   * Errors: WALWIRE_ERR_INVALID_BLOB_ID, _INVALID_OPTION (malformed sha256 or
   * size), _BLOB_TOO_LARGE, _BLOB_INCOMPLETE (body length differs from
   * `size`, or the body stream failed), _BLOB_CHECKSUM, _BLOB_EXISTS (the id
   * holds other content: delete it first), _CLOSED.
   */
  async put(body: AsyncIterable<Uint8Array> | Uint8Array, opts: BlobPutOptions = {}): Promise<BlobPutResult> {
    try {
      const result = await this.#put(body instanceof Uint8Array ? once(body) : body, opts);
      this.#puts++;
      return result;
    } catch (err) {
      this.#countFailure(err);
      throw err;
    }
  }

  /**
   * Appends BLOB_DELETE, then removes the file (see the file comment).
   * WALWIRE_ERR_NOT_FOUND when no blob has that id.
   */
  async delete(id: string): Promise<BlobDeleteResult> {
    try {
      assertBlobId(id);
      const result = await this.#exclusive(id, async () => {
        if (this.#closed) throw new ClosedError('blob store is closed');
        if (this.files.get(id) === undefined) throw new NotFoundError(`no blob ${JSON.stringify(id)} in this namespace`);
        // Event first: a crash before the remove is healed by a retried
        // DELETE (the file is still indexed); see the file comment.
        const record = await this.#log.appendBlobDelete(id);
        await failpointAsync('primary.blob.after-delete-append');
        await this.files.remove(id);
        return { id, seq: record.seq };
      });
      this.#deletes++;
      return result;
    } catch (err) {
      this.#countFailure(err);
      throw err;
    }
  }

  /** Refuses new puts and deletes, and waits for those in their locked section. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#locks.values()]);
  }

  async #put(body: AsyncIterable<Uint8Array>, opts: BlobPutOptions): Promise<BlobPutResult> {
    if (this.#closed) throw new ClosedError('blob store is closed');
    if (opts.id !== undefined) assertBlobId(opts.id);
    let expected: string | undefined;
    if (opts.sha256 !== undefined) {
      const sha = typeof opts.sha256 === 'string' ? opts.sha256.toLowerCase() : opts.sha256;
      if (!isSha256(sha)) throw new InvalidOptionError(`option sha256 must be 64 hex digits, received ${describe(opts.sha256)}`);
      expected = sha;
    }
    if (opts.id !== undefined && isSha256(opts.id)) {
      // Content-addressed id: the id itself is the expected hash.
      if (expected !== undefined && expected !== opts.id) {
        throw new BlobChecksumError(`blob id ${opts.id} is a SHA-256 but the declared sha256 is ${expected}`);
      }
      expected = opts.id;
    }
    const declared = opts.size;
    if (declared !== undefined && (!Number.isSafeInteger(declared) || declared < 0)) {
      throw new InvalidOptionError(`option size must be a non-negative integer, received ${describe(declared)}`);
    }
    if (declared !== undefined && declared > this.maxBlobBytes) {
      throw new BlobTooLargeError(`blob of ${declared} bytes exceeds maxBlobBytes ${this.maxBlobBytes}`);
    }

    // Step 1: temp file, hashed and counted as it is written.
    const temp = await this.files.createTemp(opts.id ?? 'sha256');
    let sha256: string;
    let size = 0;
    try {
      const hash = createHash('sha256');
      try {
        for await (const chunk of body) {
          size += chunk.length;
          // Checked before the write, so an oversized body never lands on disk.
          if (size > this.maxBlobBytes) throw new BlobTooLargeError(`blob exceeds maxBlobBytes ${this.maxBlobBytes} (${size} bytes received so far)`);
          if (declared !== undefined && size > declared) throw new BlobIncompleteError(`blob body is longer than its declared size ${declared}`);
          hash.update(chunk);
          await temp.write(chunk, size - chunk.length);
        }
      } catch (err) {
        if (err instanceof WalwireError) throw err;
        // The body stream failed: an aborted upload (ECONNRESET) or the caller's iterator.
        throw new BlobIncompleteError(`blob upload ended after ${size} bytes: ${(err as Error).message}`, { cause: err });
      }
      if (declared !== undefined && size !== declared) {
        throw new BlobIncompleteError(`blob body ended after ${size} of its declared ${declared} bytes`);
      }
      sha256 = hash.digest('hex');
      if (expected !== undefined && expected !== sha256) {
        throw new BlobChecksumError(`blob content has SHA-256 ${sha256}, expected ${expected}`);
      }
      await failpointAsync('primary.blob.before-commit');
    } catch (err) {
      await this.files.discard(temp);
      throw err;
    }
    const id = opts.id ?? sha256;

    // Steps 2 and 3 under the id's lock.
    let committed = false;
    try {
      return await this.#exclusive(id, async () => {
        if (this.#closed) throw new ClosedError('blob store is closed');
        const existing = this.files.get(id);
        let created = true;
        if (existing !== undefined) {
          if (existing.sha256 !== sha256) {
            throw new BlobExistsError(`blob ${id} exists with other content (sha256 ${existing.sha256}); ids are immutable, delete it first`);
          }
          // Identical content: maybe a retry after a crash between rename and
          // append. Make sure the name is durable, then log the event again.
          created = false;
          await this.files.discard(temp);
          committed = true;
          await fsyncDir(this.files.dir);
        } else {
          await this.files.commit(temp, id, sha256, size);
          committed = true;
          await failpointAsync('primary.blob.after-rename');
        }
        const record = await this.#log.appendBlobPut({ blobId: id, size, sha256 });
        this.#logger.debug({ id, sha256, size, seq: record.seq, created }, 'blob put');
        return { id, sha256, size, seq: record.seq, created };
      });
    } catch (err) {
      if (!committed) await this.files.discard(temp);
      throw err;
    }
  }

  /** Runs `fn` after every earlier put/delete of `id` has finished. */
  async #exclusive<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#locks.get(id) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const tail = previous.then(() => mine);
    this.#locks.set(id, tail);
    await previous;
    try {
      return await fn();
    } finally {
      release();
      if (this.#locks.get(id) === tail) this.#locks.delete(id);
    }
  }

  #countFailure(err: unknown): void {
    const code = err instanceof WalwireError ? err.code : 'WALWIRE_ERR_INTERNAL';
    this.#failures.set(code, (this.#failures.get(code) ?? 0) + 1);
    if (!(err instanceof WalwireError)) this.#logger.error({ err: (err as Error)?.message }, 'blob operation failed');
  }
}

/** Throws WALWIRE_ERR_INVALID_BLOB_ID unless `id` is a valid blob id. */
export function assertBlobId(id: unknown): asserts id is string {
  if (!isBlobId(id)) {
    throw new InvalidBlobIdError(`blob id must match [A-Za-z0-9_-][A-Za-z0-9._-]{0,127}, received ${describe(id)}`);
  }
}
