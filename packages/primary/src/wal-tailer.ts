/**
 * WalTailer: reads committed transactions out of one database's WAL, written
 * by any process, without ever being in the writers' path.
 *
 * WAL format: sqlite.org/fileformat2.html §4 (parsing in @walwire/protocol
 * wal.ts). Only frames up to a valid commit frame are returned (§4.3); a
 * new incarnation of the WAL is recognised by its salts (§4.3: salt-1 is
 * incremented on restart, both salts are random after a truncate).
 *
 * ## Pinning (why no frame is overwritten before it is read)
 * SQLite restarts the WAL (writes new frames from the start of the file)
 * only when (a) every frame has been copied to the database (nBackfill ==
 * mxFrame) when the restarting writer began its read, and (b) no reader holds
 * one of read-mark slots 1..N. A reader takes slot 0 only when it begins on a
 * fully checkpointed WAL, and while it holds slot 0 no checkpoint can copy
 * anything (copying needs READ_LOCK(0) exclusively). The tailer therefore
 * always holds a read transaction (a "pin") on one of two connections, and
 * follows two rules:
 *   1. A new pin begins while the old one is still held (or while the seal,
 *      i.e. SQLite's write lock, is held), and the tailer reads the WAL to
 *      its committed end after the new pin began and before the old one is
 *      released.
 *   2. After pins are dropped under the seal, a new pin begins before the
 *      seal is released.
 * A restart while pin P is held needs P in slot 0, so nothing was copied
 * since P began and the WAL then held exactly the frames present at P's
 * start; by rule 1 or 2 those were read before P's predecessor (or the
 * seal) went away. So every restart or TRUNCATE that SQLite performs while
 * the daemon runs only discards frames already read, whoever triggers it.
 * Across a daemon restart nothing is pinned, and continuity is checked by
 * the namespace against the log (salts, offset and checksum chain).
 *
 * Never open and close the database file or its -shm with fs here (the
 * POSIX-lock trap, design.md). The -wal file carries no locks: it is opened
 * and closed with fs freely.
 */
import Database from 'better-sqlite3';
import { readSync, statSync, watch, type FSWatcher } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import {
  TimeoutError,
  WAL_FRAME_HEADER_BYTES,
  WAL_HEADER_BYTES,
  WalFormatError,
  initialWalState,
  parseWalHeader,
  scanWalFrames,
  type WalCommit,
  type WalHeader,
  type WalScanState,
} from '@walwire/protocol';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Reads up to this size are synchronous. Keeping up with a writer, each read
 * is a few frames the writer just put in the page cache: a synchronous read
 * costs microseconds, an asynchronous one a thread-pool round trip (three
 * per read: stat, header, frames) that is most of the commit-to-log latency
 * on a busy machine. Larger reads stay asynchronous so the event loop
 * never waits on them.
 */
const SYNC_READ_BYTES = 1024 * 1024;

/**
 * Capacity of the reused read buffer (see `#readBuffer`). A pass reads
 * until it has walReadBytes, so its last read can end nearly one read size
 * past that: at the default walReadBytes (1 MiB), every read of a pass fits.
 */
const READ_BUFFER_BYTES = 2 * SYNC_READ_BYTES;

/** Size of the first read of a `readNew` (see there). */
const FIRST_READ_BYTES = 64 * 1024;

export interface WalTailerOptions {
  readonly dbPath: string;
  readonly walReadBytes: number;
  readonly walStallTimeoutMs: number;
  readonly sealTimeoutMs: number;
}

/** New committed transactions found by one read. */
export interface TailRead {
  /**
   * Their pages may be views into the tailer's read buffer, which the next
   * `readNew`, `repin` or `establish` reuses: log (encode) them before that.
   */
  readonly commits: readonly WalCommit[];
  /** Scan state after the last commit returned (undefined: no WAL header yet). */
  readonly state: WalScanState | undefined;
  /** The WAL was restarted or truncated (a new incarnation) since the last read. */
  readonly newIncarnation: boolean;
  /** Current WAL file size in bytes. */
  readonly walBytes: number;
  /** The read stopped at its byte limit with more frames in the file: read again. */
  readonly more?: boolean;
}

/** Everything in the WAL at a sealed moment (see `establish`). */
export interface WalSnapshot {
  /** The whole WAL file; empty when it is missing or shorter than a header. */
  readonly bytes: Buffer;
  readonly header: WalHeader | undefined;
  /** Database size in pages inside the new pin (SQLite's own view). */
  readonly pageCount: number;
}

/** Error whose continuity consequence the namespace must handle with a new generation. */
export class DiscontinuityError extends Error {
  override readonly name = 'DiscontinuityError';
}

export class WalTailer {
  readonly #walPath: string;
  readonly #options: WalTailerOptions;
  readonly #control: Database.Database;
  readonly #pins: [Database.Database, Database.Database];
  /** Index of the connection holding the current pin, or -1. */
  #pinned = -1;
  #sealed = false;
  #file: FileHandle | undefined;
  #fileIno = -1;
  #state: WalScanState | undefined;
  #stall: { offset: number; since: number } | undefined;
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;
  #onChange: (() => void) | undefined;
  #closed = false;
  /**
   * Every synchronous read lands here, each at the end of the previous
   * one's whole commits, and the commits returned are views into it: no
   * per-read allocation and no copy. The next `readNew` starts again at 0,
   * which is why a TailRead's pages are only valid until then. A fresh
   * buffer per read (then a copy of the frames kept, then the log record:
   * two allocations per commit) cost about 2 × the write rate in external
   * memory that only a GC gives back: 20–30 MB held at 50 MB/s, most of the
   * primary's RSS growth under load. Allocated at READ_BUFFER_BYTES on first
   * use and kept.
   */
  #readBuffer: Buffer | undefined;
  /**
   * Set by releaseBuffer, cleared by the next read that returns commits:
   * until then reads use memory of their own size, so that an idle poll
   * (which may read the stale frames past a restarted WAL's end) does not
   * allocate the whole buffer again each time.
   */
  #released = false;

  /** Bytes of the reused read buffer held. */
  get bufferBytes(): number {
    return this.#readBuffer?.length ?? 0;
  }

  /**
   * Gives the reused read buffer back (allocated again by the next read
   * that needs it). Safe at any time: the pages of earlier reads keep
   * their memory alive for as long as they are used.
   */
  releaseBuffer(): void {
    this.#readBuffer = undefined;
    this.#released = true;
  }

  constructor(control: Database.Database, options: WalTailerOptions) {
    this.#options = options;
    this.#walPath = `${options.dbPath}-wal`;
    this.#control = control;
    const pin = (): Database.Database => {
      const db = new Database(options.dbPath, { fileMustExist: true, timeout: 100 });
      return db;
    };
    this.#pins = [pin(), pin()];
  }

  get walPath(): string {
    return this.#walPath;
  }

  /** Scan state: the WAL incarnation and offset just past the last commit read. */
  get state(): WalScanState | undefined {
    return this.#state;
  }

  set state(value: WalScanState | undefined) {
    this.#state = value;
  }

  /**
   * Calls `onChange` on fs.watch events on the WAL and every `pollMs`. The
   * watch is one-shot: an event disarms it, and the caller re-arms it with
   * `armWatch` when it has caught up. A busy writer would otherwise pay a
   * kernel inotify event per write and wake this process for each; while
   * the caller is catching up it reads on its own schedule instead.
   */
  watch(pollMs: number, onChange: () => void): void {
    this.#onChange = onChange;
    this.#timer = setInterval(onChange, pollMs);
    this.#timer.unref();
    this.armWatch();
  }

  /** Arms the watch; true when it was not armed (the caller reads once more to cover the gap). */
  armWatch(): boolean {
    if (this.#watcher !== undefined || this.#closed || this.#onChange === undefined) return false;
    const onChange = this.#onChange;
    try {
      const watcher = watch(this.#walPath, { persistent: false }, () => {
        this.#disarmWatch();
        onChange();
      });
      watcher.on('error', () => this.#disarmWatch());
      this.#watcher = watcher;
      return true;
    } catch {
      // Missing WAL: the polling fallback covers it.
      return false;
    }
  }

  #disarmWatch(): void {
    this.#watcher?.close();
    this.#watcher = undefined;
  }

  /**
   * Takes SQLite's write lock (BEGIN IMMEDIATE) on the control connection.
   * busy_timeout is 0 there and the wait is an async retry loop, so a
   * writer holding the lock never blocks the event loop.
   */
  async seal(): Promise<void> {
    const deadline = Date.now() + this.#options.sealTimeoutMs;
    let delay = 1;
    for (;;) {
      try {
        this.#control.exec('BEGIN IMMEDIATE');
        this.#sealed = true;
        return;
      } catch (err) {
        const code = (err as { code?: string }).code ?? '';
        if (!code.startsWith('SQLITE_BUSY') && code !== 'SQLITE_LOCKED') throw err;
      }
      if (Date.now() > deadline) {
        throw new TimeoutError(`sealing ${this.#options.dbPath} (BEGIN IMMEDIATE) waited longer than sealTimeoutMs=${this.#options.sealTimeoutMs} for other writers`);
      }
      await sleep(delay);
      delay = Math.min(delay * 2, 4);
    }
  }

  /** Releases the seal: ROLLBACK of the empty write transaction. */
  unseal(): void {
    if (!this.#sealed) return;
    this.#sealed = false;
    this.#control.exec('ROLLBACK');
  }

  /** Begins a read transaction on the connection not currently pinned. Returns its index. */
  #beginPin(): number {
    const next = this.#pinned === 0 ? 1 : 0;
    const db = this.#pins[next];
    db.exec('BEGIN');
    // A read starts the WAL read transaction; BEGIN alone does not.
    db.prepare('SELECT count(*) FROM sqlite_schema').get();
    return next;
  }

  #endPin(index: number): void {
    if (index < 0) return;
    const db = this.#pins[index]!;
    if (db.inTransaction) db.exec('COMMIT');
  }

  /** Drops every pin. Only under the seal (pinning rule 2). */
  releasePins(): void {
    if (!this.#sealed) throw new Error('releasePins outside the seal would let SQLite overwrite unread frames');
    this.#endPin(0);
    this.#endPin(1);
    this.#pinned = -1;
  }

  /** Pins under the seal (pinning rule 2). */
  pinSealed(): void {
    if (!this.#sealed) throw new Error('pinSealed outside the seal');
    const next = this.#beginPin();
    this.#endPin(this.#pinned);
    this.#pinned = next;
  }

  /**
   * Re-pins (rule 1): begins a new pin, reads everything committed since the
   * last read, then drops the old pin. The caller must log the returned
   * commits. Lets checkpoints copy frames up to the new pin.
   */
  async repin(): Promise<TailRead> {
    const next = this.#beginPin();
    let read: TailRead;
    try {
      read = await this.readNew();
    } catch (err) {
      this.#endPin(next);
      throw err;
    }
    this.#endPin(this.#pinned);
    this.#pinned = next;
    return read;
  }

  /** Database size in pages as seen by the current pin. */
  pinnedPageCount(): number {
    const db = this.#pins[this.#pinned];
    if (db === undefined) throw new Error('no pin held');
    return db.pragma('page_count', { simple: true }) as number;
  }

  /**
   * Reads the whole WAL under the seal, then pins (rule 2) and unseals. The
   * snapshot is exactly the committed content when the pin began.
   */
  async establish(): Promise<WalSnapshot> {
    await this.seal();
    try {
      this.releasePins();
      await this.#reopen();
      const size = this.#file === undefined ? 0 : (await this.#file.stat()).size;
      const bytes = Buffer.allocUnsafe(size);
      let got = 0;
      while (got < size) {
        const { bytesRead } = await this.#file!.read(bytes, got, size - got, got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      const data = bytes.subarray(0, got);
      const header = data.length >= WAL_HEADER_BYTES ? parseWalHeader(data) : undefined;
      this.pinSealed();
      return { bytes: data, header, pageCount: this.pinnedPageCount() };
    } finally {
      this.unseal();
    }
  }

  /** Opens the -wal file (again, when it was replaced). */
  async #reopen(): Promise<void> {
    await this.#file?.close();
    this.#file = undefined;
    this.#fileIno = -1;
    try {
      this.#file = await open(this.#walPath, 'r');
      this.#fileIno = (await this.#file.stat()).ino;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }

  /**
   * Reads frames committed since the last read. Throws DiscontinuityError
   * when the WAL file was replaced or deleted, or shrank within the same
   * incarnation; WalFormatError for a corrupt header or a frame that stays
   * corrupt for walStallTimeoutMs.
   *
   * With `limitBytes`, stops after the first commit that brings the bytes
   * read to at least that (`more` tells the caller to read again): a writer
   * far ahead is then logged in slices, and the memory a pass holds (its
   * frames, then their records) stays bounded. The pinning rules need a read
   * to the committed end, so `repin` and the sealed read pass no limit.
   */
  async readNew(limitBytes = Number.POSITIVE_INFINITY): Promise<TailRead> {
    if (this.#closed) return { commits: [], state: this.#state, newIncarnation: false, walBytes: 0 };
    let st;
    try {
      st = statSync(this.#walPath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new DiscontinuityError('the WAL file vanished while the daemon was running');
      throw err;
    }
    if (this.#file === undefined || st.ino !== this.#fileIno) {
      if (this.#file !== undefined) throw new DiscontinuityError('the WAL file was replaced while the daemon was running');
      await this.#reopen();
    }
    const file = this.#file!;
    const size = st.size;
    if (size < WAL_HEADER_BYTES) {
      // Truncated (TRUNCATE checkpoint) and not yet rewritten: nothing to read.
      return { commits: [], state: this.#state, newIncarnation: false, walBytes: size };
    }
    const head = Buffer.allocUnsafe(WAL_HEADER_BYTES);
    const headBytes = readSync(file.fd, head, 0, WAL_HEADER_BYTES, 0);
    if (headBytes < WAL_HEADER_BYTES) {
      // Truncated between the stat and the read.
      return { commits: [], state: this.#state, newIncarnation: false, walBytes: headBytes };
    }
    let newIncarnation = false;
    let state = this.#state;
    if (state === undefined || state.header.salt1 !== head.readUInt32BE(16) || state.header.salt2 !== head.readUInt32BE(20)) {
      let header: WalHeader;
      try {
        header = parseWalHeader(head);
      } catch (err) {
        // A header being rewritten (restart, or the first write after a
        // TRUNCATE) can be seen half-written; only a persistent one is corrupt.
        this.#checkStall(0, Number.POSITIVE_INFINITY, 0, err as Error);
        return { commits: [], state: this.#state, newIncarnation: false, walBytes: size };
      }
      newIncarnation = state !== undefined;
      state = initialWalState(header);
      this.#stall = undefined;
    } else if (size < state.offset) {
      throw new DiscontinuityError(`the WAL is ${size} bytes, shorter than the ${state.offset} bytes already read, with the same salts`);
    }
    const frameBytes = WAL_FRAME_HEADER_BYTES + state.header.pageSize;
    const commits: WalCommit[] = [];
    // The file does not shrink when SQLite restarts the WAL: past the new
    // frames lie the old incarnation's (they fail the salt check). Reading
    // to the end of the file every time would read and drop megabytes per
    // commit, so the first read is small and each one that was all frames
    // doubles the next, up to walReadBytes.
    const maxChunk = Math.max(frameBytes, Math.floor(this.#options.walReadBytes / frameBytes) * frameBytes);
    let chunk = Math.min(maxChunk, Math.max(frameBytes, Math.floor(FIRST_READ_BYTES / frameBytes) * frameBytes));
    let readBytes = 0;
    let used = 0;
    let more = false;
    while (state.offset + frameBytes <= size) {
      if (readBytes >= limitBytes && commits.length > 0) {
        more = true;
        break;
      }
      const available = Math.floor((size - state.offset) / frameBytes) * frameBytes;
      const want = Math.min(chunk, available);
      let buf: Buffer;
      let bytesRead: number;
      let scan: ReturnType<typeof scanWalFrames>;
      if (want <= SYNC_READ_BYTES) {
        if (!this.#released) this.#readBuffer ??= Buffer.allocUnsafe(READ_BUFFER_BYTES);
        // Past `used` lie only frames of no commit returned (an open
        // transaction's, read again now); when the rest is too small, a
        // fresh buffer that the returned pages alone keep.
        const reused = this.#readBuffer;
        const inPlace = reused !== undefined && READ_BUFFER_BYTES - used >= want;
        buf = inPlace ? reused.subarray(used, used + want) : Buffer.allocUnsafe(want);
        bytesRead = readSync(file.fd, buf, 0, want, state.offset);
        scan = scanWalFrames(buf.subarray(0, bytesRead), state.offset, state);
        if (inPlace) used += scan.state.offset - state.offset;
        for (const c of scan.commits) commits.push(c);
      } else {
        // A fresh buffer, mostly frames: the page views may keep it.
        buf = Buffer.allocUnsafe(want);
        bytesRead = (await file.read(buf, 0, want, state.offset)).bytesRead;
        scan = scanWalFrames(buf.subarray(0, bytesRead), state.offset, state);
        for (const c of scan.commits) commits.push(c);
      }
      readBytes += bytesRead;
      state = scan.state;
      if (scan.stop === 'checksum-mismatch') {
        this.#checkStall(scan.stopOffset, size, frameBytes);
        break;
      }
      if (scan.stop === 'salt-mismatch') break;
      if (scan.commits.length === 0) {
        // An open transaction longer than the chunk: read more at once.
        if (bytesRead < want || want === available) break;
        chunk *= 2;
      } else {
        chunk = Math.min(chunk * 2, maxChunk);
      }
    }
    if (commits.length > 0 || newIncarnation) this.#stall = undefined;
    this.#state = state;
    if (commits.length > 0) this.#released = false;
    return { commits, state, newIncarnation, walBytes: size, more };
  }

  /**
   * A checksum mismatch is normal for a frame being written right now; one
   * that persists while later bytes exist is corruption (§4.3: SQLite would
   * discard everything from that frame on at its next recovery).
   */
  #checkStall(offset: number, size: number, frameBytes: number, headerError?: Error): void {
    if (offset + frameBytes >= size) return;
    const now = Date.now();
    if (this.#stall === undefined || this.#stall.offset !== offset) {
      this.#stall = { offset, since: now };
      return;
    }
    if (now - this.#stall.since >= this.#options.walStallTimeoutMs) {
      if (headerError !== undefined) {
        throw new WalFormatError(`${this.#walPath}: the WAL header has been invalid for ${now - this.#stall.since} ms: ${headerError.message}`, { cause: headerError });
      }
      throw new WalFormatError(
        `${this.#walPath}: the frame at offset ${offset} has failed its checksum for ${now - this.#stall.since} ms while later bytes exist (corrupt WAL)`,
      );
    }
  }

  /** Stops watching, drops pins and closes the WAL file (the connections stay with the caller). */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#disarmWatch();
    if (this.#sealed) this.unseal();
    this.#endPin(0);
    this.#endPin(1);
    this.#pinned = -1;
    for (const db of this.#pins) db.close();
    await this.#file?.close();
    this.#file = undefined;
  }
}
