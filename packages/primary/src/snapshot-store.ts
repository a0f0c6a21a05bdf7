/**
 * Snapshot images of one namespace: page-exact database images at a known
 * seq, kept as immutable files beside the replication log, so that a
 * bootstrap never reads the live database (and never risks its locks).
 *
 *     snapshots/<generation>-<seq>.img    the database image after seq
 *     snapshots/<generation>-<seq>.json   {generation, seq, checksum, pageSize, pageCount, chunkPages, chunkCrcs}
 *
 * The generation's base (seq 0) is written when the generation starts, from
 * the very image the tailer checksums. `advance()` rolls the newest image
 * forward: copy it, write the pages of each log record in order (truncating
 * or extending to each record's commit size), verify the copy's database
 * checksum against the log's checksum at the target seq, then publish it.
 * Snapshots are thereby checked against the log on every advance
 * (invariant 4), and retention may drop log records at or below the newest
 * snapshot's seq. Each image's meta also holds a CRC-32 per snapshot chunk,
 * computed while the image is written (base) or checksummed (advance), so a
 * bootstrap reads the image once: the sender needs the CRCs for the manifest
 * before the first chunk.
 *
 * Publishing an image (writeImage/advance), crash between steps:
 *   1. write <name>.img.tmp, fdatasync      → temp left; removed at open
 *   2. rename to <name>.img, fsync dir       → image without meta: ignored, removed at open
 *   3. write <name>.json durably (temp, fsync, rename, dir fsync): the commit point
 *   4. remove older images                   → extra old images: removed at next publish
 */
import { copyFile, mkdir, open, readdir, readFile, rename, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { LogCorruptError, crc32, isChecksum, isGeneration, lockBytePage, DatabaseChecksum } from '@walwire/protocol';
import { type Logger, fsyncDir, writeFileDurable } from '@walwire/runtime';
import type { LogRecord } from './log-record.js';
import type { SnapshotSource } from './snapshot-sender.js';

export interface SnapshotMeta {
  readonly generation: string;
  readonly seq: number;
  readonly checksum: string;
  readonly pageSize: number;
  readonly pageCount: number;
  /** Pages per snapshot chunk, and the CRC-32 of each chunk of the image (absent in metas of older versions). */
  readonly chunkPages?: number;
  readonly chunkCrcs?: readonly number[];
}

/** What advance() reads: durable records of the current generation. */
export interface SnapshotLog {
  readonly generation: string | undefined;
  read(from: number, to?: number): AsyncIterable<LogRecord>;
}

const NAME = /^([0-9a-f]{32})-(\d+)\.json$/;

export class SnapshotStore {
  readonly dir: string;
  readonly #logger: Logger;
  /** Chunk size whose CRCs each published image carries. */
  readonly #chunkBytes: number;
  #latest: SnapshotMeta | undefined;
  /** Serializes writers; readers use published files, which never change. */
  #busy: Promise<unknown> = Promise.resolve();
  readonly #readers = new Map<string, number>();

  private constructor(dir: string, logger: Logger, chunkBytes: number) {
    this.dir = dir;
    this.#logger = logger;
    this.#chunkBytes = chunkBytes;
  }

  /**
   * Opens the store, removing what a crash left half-published. Images it
   * publishes carry CRCs of `chunkBytes` chunks (the sender's chunk size).
   */
  static async open(dir: string, logger: Logger, chunkBytes = 4 * 1024 * 1024): Promise<SnapshotStore> {
    await mkdir(dir, { recursive: true });
    const store = new SnapshotStore(dir, logger, chunkBytes);
    const names = await readdir(dir);
    const metas: SnapshotMeta[] = [];
    for (const name of names) {
      const m = NAME.exec(name);
      if (m === null) continue;
      try {
        const meta = JSON.parse(await readFile(join(dir, name), 'utf8')) as SnapshotMeta;
        if (isGeneration(meta.generation) && isChecksum(meta.checksum) && names.includes(name.replace(/\.json$/, '.img'))) metas.push(meta);
      } catch {
        // A meta file is written durably in one rename; an unreadable one is garbage.
      }
    }
    metas.sort((a, b) => a.seq - b.seq);
    store.#latest = metas.at(-1);
    const keep = new Set(store.#latest ? [`${fileBase(store.#latest)}.img`, `${fileBase(store.#latest)}.json`] : []);
    for (const name of names) if (!keep.has(name)) await rm(join(dir, name), { force: true });
    return store;
  }

  /** The newest published snapshot, if any. */
  get latest(): SnapshotMeta | undefined {
    return this.#latest;
  }

  /**
   * Publishes an image read from `pages` (called with consecutive page
   * slices starting at page 1): the generation's base at seq 0.
   */
  writeImage(meta: SnapshotMeta, fill: (write: (offset: number, data: Uint8Array) => Promise<void>) => Promise<void>): Promise<SnapshotMeta> {
    return this.#serialize(async () => {
      const tmp = join(this.dir, `${fileBase(meta)}.img.tmp`);
      const handle = await open(tmp, 'w');
      const crcs = new ChunkCrcs(this.#chunkPages(meta.pageSize), meta.pageSize);
      try {
        await fill(async (offset, data) => {
          crcs.add(offset, data);
          await handle.write(data, 0, data.length, offset);
        });
        await handle.truncate(meta.pageCount * meta.pageSize);
        await handle.datasync();
      } finally {
        await handle.close();
      }
      return this.#publish({ ...meta, ...crcs.finish(meta.pageCount) }, tmp);
    });
  }

  /**
   * Rolls the newest image forward to `toSeq` by replaying log records, and
   * verifies the result against `expectedChecksum` (the log's checksum at
   * toSeq). Returns the newest meta (unchanged when already at toSeq).
   */
  advance(log: SnapshotLog, toSeq: number, expectedChecksum: string): Promise<SnapshotMeta> {
    return this.#serialize(async () => {
      const base = this.#latest;
      if (base === undefined || base.generation !== log.generation) {
        throw new LogCorruptError(`no snapshot image of generation ${String(log.generation)} to advance from`);
      }
      if (toSeq <= base.seq) return base;
      const target: SnapshotMeta = { ...base, seq: toSeq, checksum: expectedChecksum };
      const tmp = join(this.dir, `${fileBase(target)}.img.tmp`);
      await copyFile(join(this.dir, `${fileBase(base)}.img`), tmp);
      const handle = await open(tmp, 'r+');
      let pageCount = base.pageCount;
      let chunks: Pick<SnapshotMeta, 'chunkPages' | 'chunkCrcs'> = {};
      try {
        for await (const record of log.read(base.seq + 1, toSeq)) {
          if (record.kind !== 'txn') continue;
          for (const p of record.txn.pages) await handle.write(p.data, 0, p.data.length, (p.pgno - 1) * base.pageSize);
          if (record.txn.commitSize !== pageCount) {
            pageCount = record.txn.commitSize;
            await handle.truncate(pageCount * base.pageSize);
          }
        }
        await handle.datasync();
        const crcs = new ChunkCrcs(this.#chunkPages(base.pageSize), base.pageSize);
        const actual = await checksumFile(handle, base.pageSize, pageCount, crcs);
        chunks = crcs.finish(pageCount);
        if (actual !== expectedChecksum) {
          throw new LogCorruptError(`snapshot image replayed to seq ${toSeq} has checksum ${actual}, the log says ${expectedChecksum}`);
        }
      } catch (err) {
        await handle.close();
        await rm(tmp, { force: true });
        throw err;
      }
      await handle.close();
      return this.#publish({ ...target, pageCount, chunkPages: undefined, chunkCrcs: undefined, ...chunks }, tmp);
    });
  }

  /**
   * A reader of the newest image. The file is never modified; a publish
   * that replaces it waits to delete it until every reader closed.
   */
  openReader(): Promise<SnapshotSource> {
    const meta = this.#latest;
    if (meta === undefined) return Promise.reject(new LogCorruptError('no snapshot image exists'));
    const file = `${fileBase(meta)}.img`;
    this.#readers.set(file, (this.#readers.get(file) ?? 0) + 1);
    const release = (): void => {
      const n = (this.#readers.get(file) ?? 1) - 1;
      if (n > 0) this.#readers.set(file, n);
      else this.#readers.delete(file);
    };
    return open(join(this.dir, file), 'r').then(
      (handle): SnapshotSource => ({
        ...meta,
        read: async (offset, length, into) => {
          const buf = into ?? Buffer.allocUnsafe(length);
          const { bytesRead } = await handle.read(buf, 0, length, offset);
          if (bytesRead !== length) throw new LogCorruptError(`snapshot image ${file} is short at offset ${offset}`);
          return buf.subarray(0, length);
        },
        close: async () => {
          await handle.close();
          release();
        },
      }),
      (err: unknown) => {
        release();
        throw err;
      },
    );
  }

  /** Removes every image (reset-replication, generation change). */
  clear(): Promise<void> {
    return this.#serialize(async () => {
      for (const name of await readdir(this.dir)) await rm(join(this.dir, name), { force: true });
      this.#latest = undefined;
      await fsyncDir(this.dir);
    });
  }

  #chunkPages(pageSize: number): number {
    return Math.max(1, Math.floor(this.#chunkBytes / pageSize));
  }

  async #publish(meta: SnapshotMeta, tmp: string): Promise<SnapshotMeta> {
    const base = fileBase(meta);
    await rename(tmp, join(this.dir, `${base}.img`));
    await fsyncDir(this.dir);
    await writeFileDurable(join(this.dir, `${base}.json`), JSON.stringify(meta));
    const previous = this.#latest;
    this.#latest = meta;
    if (previous && fileBase(previous) !== base) {
      await rm(join(this.dir, `${fileBase(previous)}.json`), { force: true });
      if (!this.#readers.has(`${fileBase(previous)}.img`)) await rm(join(this.dir, `${fileBase(previous)}.img`), { force: true });
    }
    this.#logger.info({ generation: meta.generation, seq: meta.seq, pages: meta.pageCount, checksum: meta.checksum }, 'snapshot image published');
    return meta;
  }

  #serialize<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#busy.then(work, work);
    this.#busy = run.catch(() => {});
    return run;
  }
}

function fileBase(meta: Pick<SnapshotMeta, 'generation' | 'seq'>): string {
  return `${meta.generation}-${meta.seq}`;
}

/**
 * CRC-32 of each chunk of an image written or read front to back, in slices
 * of any size. Bytes out of order (or a short image) leave no CRCs: the
 * sender then computes them.
 */
class ChunkCrcs {
  readonly #chunkBytes: number;
  readonly #chunkPages: number;
  readonly #pageSize: number;
  readonly #crcs: number[] = [];
  #crc = 0;
  #inChunk = 0;
  #next = 0;
  #broken = false;

  constructor(chunkPages: number, pageSize: number) {
    this.#chunkPages = chunkPages;
    this.#pageSize = pageSize;
    this.#chunkBytes = chunkPages * pageSize;
  }

  add(offset: number, data: Uint8Array): void {
    if (this.#broken || offset !== this.#next) {
      this.#broken = true;
      return;
    }
    this.#next += data.length;
    for (let at = 0; at < data.length; ) {
      const n = Math.min(data.length - at, this.#chunkBytes - this.#inChunk);
      this.#crc = crc32(data.subarray(at, at + n), this.#crc);
      this.#inChunk += n;
      at += n;
      if (this.#inChunk === this.#chunkBytes) {
        this.#crcs.push(this.#crc);
        this.#crc = 0;
        this.#inChunk = 0;
      }
    }
  }

  /** The CRCs of an image of pageCount pages, or nothing if the bytes seen were not exactly that image. */
  finish(pageCount: number): Pick<SnapshotMeta, 'chunkPages' | 'chunkCrcs'> {
    if (this.#broken || this.#next !== pageCount * this.#pageSize) return {};
    return { chunkPages: this.#chunkPages, chunkCrcs: this.#inChunk > 0 ? [...this.#crcs, this.#crc] : [...this.#crcs] };
  }
}

/** Database checksum of an image file's first pageCount pages (and its chunk CRCs, read in order). */
async function checksumFile(handle: FileHandle, pageSize: number, pageCount: number, crcs: ChunkCrcs): Promise<string> {
  const sum = new DatabaseChecksum(pageCount);
  const slice = Math.max(1, Math.floor((4 * 1024 * 1024) / pageSize));
  const buf = Buffer.allocUnsafe(slice * pageSize);
  const lockPage = lockBytePage(pageSize);
  for (let first = 1; first <= pageCount; first += slice) {
    const count = Math.min(slice, pageCount - first + 1);
    const { bytesRead } = await handle.read(buf, 0, count * pageSize, (first - 1) * pageSize);
    if (bytesRead !== count * pageSize) throw new LogCorruptError(`snapshot image is short at page ${first}`);
    crcs.add((first - 1) * pageSize, buf.subarray(0, count * pageSize));
    for (let k = 0; k < count; k++) {
      if (first + k !== lockPage) sum.setPage(first + k, buf.subarray(k * pageSize, (k + 1) * pageSize));
    }
  }
  return sum.value;
}
