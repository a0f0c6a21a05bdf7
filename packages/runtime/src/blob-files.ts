/**
 * One namespace's blob directory, the same on primary and replica.
 *
 * Layout: one file per live blob, named `<id>~<sha256>` (the `~` is outside
 * the blob-id alphabet, so the split is unambiguous). Naming the content in
 * the file name lets a reader ask for "blob id X with content S" and get
 * ENOENT when X was deleted and re-put with other content since: a stale
 * put event can never stream the wrong bytes. Temp files are
 * `.<id>.<random>.tmp` (durable-fs.ts), which no id can name.
 *
 * Saving is: write the temp file, fsync it, rename it to `<id>~<sha256>`,
 * remove any other version of the id, fsync the directory. Crash between
 * any two steps:
 * - before the rename: only a temp file exists, the blob is not visible, and
 *   `removeStaleTemps` deletes the temp at the next open;
 * - after the rename, before the directory fsync: the blob is visible whole
 *   (rename(2) is atomic); after power loss it may vanish again, which the
 *   caller's log or cursor covers: nothing durable points at it before
 *   `commit` returns;
 * - after the rename, before removing an older version: both names exist;
 *   the next open keeps the newest (by mtime) and removes the other.
 *
 * The in-memory index is built from the directory at open and kept in step
 * by commit/remove; it is the only place lookups go.
 */
import { constants, mkdirSync, promises as fsp, readdirSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { isBlobId, isSha256 } from '@walwire/protocol';
import { BackgroundSync, fsyncDir, removeStaleTemps, tempPathFor } from './durable-fs.js';

export interface BlobInfo {
  readonly id: string;
  /** SHA-256 of the content, 64 lowercase hex digits. */
  readonly sha256: string;
  readonly size: number;
  /** Absolute path of the file. */
  readonly path: string;
}

/** Separator between id and sha256 in a blob file name. */
const SEP = '~';

/** File name of a blob version. */
export function blobFileName(id: string, sha256: string): string {
  return `${id}${SEP}${sha256}`;
}

/** Parses a blob file name, or undefined for anything else. */
export function parseBlobFileName(name: string): { id: string; sha256: string } | undefined {
  const at = name.lastIndexOf(SEP);
  if (at < 0) return undefined;
  const id = name.slice(0, at);
  const sha256 = name.slice(at + 1);
  return isBlobId(id) && isSha256(sha256) ? { id, sha256 } : undefined;
}

/** A temp file being written; `BlobDirectory.commit` or `discard` ends it. */
export class BlobTemp {
  readonly path: string;
  readonly handle: fsp.FileHandle;
  readonly #sync: BackgroundSync;

  constructor(path: string, handle: fsp.FileHandle) {
    this.path = path;
    this.handle = handle;
    this.#sync = new BackgroundSync(handle);
  }

  /** Writes all of `data` at `position`; writeback runs in the background as it grows (BackgroundSync). */
  async write(data: Uint8Array, position: number): Promise<void> {
    let at = 0;
    while (at < data.length) {
      const { bytesWritten } = await this.handle.write(data, at, data.length - at, position + at);
      at += bytesWritten;
    }
    this.#sync.wrote(data.length);
  }

  /** Waits for the background sync in flight; rejects with the first failure. */
  settled(): Promise<void> {
    return this.#sync.settled();
  }
}

export class BlobDirectory {
  readonly dir: string;
  readonly #index = new Map<string, BlobInfo>();
  #bytes = 0;

  /** Opens (creating) `dir`, deletes stale temps and indexes the blobs. */
  constructor(dir: string) {
    this.dir = dir;
    mkdirSync(dir, { recursive: true });
    removeStaleTemps(dir);
    const found = new Map<string, { info: BlobInfo; mtime: number }>();
    for (const name of readdirSync(dir)) {
      const parsed = parseBlobFileName(name);
      if (parsed === undefined) continue;
      const path = join(dir, name);
      const st = statSync(path);
      const entry = { info: { ...parsed, size: st.size, path }, mtime: st.mtimeMs };
      const other = found.get(parsed.id);
      // Two versions of one id: a crash between rename and removal of the older one.
      if (other !== undefined) {
        const [keep, drop] = other.mtime > entry.mtime ? [other, entry] : [entry, other];
        unlinkSync(drop.info.path);
        found.set(parsed.id, keep);
      } else {
        found.set(parsed.id, entry);
      }
    }
    for (const { info } of found.values()) {
      this.#index.set(info.id, info);
      this.#bytes += info.size;
    }
  }

  /** The live version of `id`, or undefined. */
  get(id: string): BlobInfo | undefined {
    return this.#index.get(id);
  }

  /** True when `id` is stored with exactly this content. */
  has(id: string, sha256: string): boolean {
    return this.#index.get(id)?.sha256 === sha256;
  }

  get count(): number {
    return this.#index.size;
  }

  /** Total bytes of live blobs. */
  get bytes(): number {
    return this.#bytes;
  }

  list(): BlobInfo[] {
    return [...this.#index.values()];
  }

  /** Creates an empty temp file for a new version of `id`. */
  async createTemp(id: string): Promise<BlobTemp> {
    const path = tempPathFor(join(this.dir, id));
    const handle = await fsp.open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644);
    return new BlobTemp(path, handle);
  }

  /**
   * Makes a written temp file the live version of `id`: fsync, close,
   * rename, remove other versions, directory fsync. `sha256` and `size`
   * must already be verified by the caller.
   */
  async commit(temp: BlobTemp, id: string, sha256: string, size: number): Promise<BlobInfo> {
    try {
      await temp.settled();
      await temp.handle.sync();
    } catch (err) {
      // Nothing was renamed: the temp goes, and the caller sees the error.
      await this.discard(temp);
      throw err;
    }
    await temp.handle.close();
    const path = join(this.dir, blobFileName(id, sha256));
    await fsp.rename(temp.path, path);
    const old = this.#index.get(id);
    if (old !== undefined && old.path !== path) await fsp.rm(old.path, { force: true });
    await fsyncDir(this.dir);
    const info: BlobInfo = { id, sha256, size, path };
    if (old !== undefined) this.#bytes -= old.size;
    this.#bytes += size;
    this.#index.set(id, info);
    return info;
  }

  /** Closes and deletes a temp file that will not be committed. */
  async discard(temp: BlobTemp): Promise<void> {
    await temp.settled().catch(() => {});
    await temp.handle.close().catch(() => {});
    await fsp.rm(temp.path, { force: true });
  }

  /** Durably removes every version of `id`. Returns what was removed, or undefined. */
  async remove(id: string): Promise<BlobInfo | undefined> {
    const info = this.#index.get(id);
    if (info === undefined) return undefined;
    this.#index.delete(id);
    this.#bytes -= info.size;
    await fsp.rm(info.path, { force: true });
    await fsyncDir(this.dir);
    return info;
  }

  /**
   * Opens the version of `id` with content `sha256` for reading, or returns
   * undefined when that exact version is not stored (deleted, or replaced).
   */
  async open(id: string, sha256: string): Promise<fsp.FileHandle | undefined> {
    try {
      return await fsp.open(join(this.dir, blobFileName(id, sha256)), constants.O_RDONLY);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }
}
