/**
 * Receives a snapshot stream for one namespace and installs it.
 *
 * Staging, under `<namespace dir>/staging/`:
 *   manifest.json   the SNAPSHOT_BEGIN fields (generation, seq, geometry, chunk CRCs)
 *   image           the database image, chunk i at byte i · chunkPages · pageSize
 *
 * A chunk arrives under its frame's CRC-32 and must name the manifest's CRC
 * for its index. Once written, the namespace's apply worker reads it back,
 * checks it against the manifest's CRC and adds it to the image's database
 * checksum (ReplicaNamespace.verifyStaged), on its own thread while the next
 * chunks arrive: no pass over the whole image is left for the install, and
 * a chunk whose bytes do not match ends the connection before anything uses
 * it (the resume fetches it again).
 *
 * Which chunks are staged is not recorded separately: at resume time the
 * image is read back and its chunks are checked against the manifest's CRCs,
 * and the staged prefix ends at the first chunk that does not match (never
 * written, or torn by a crash). So no sync is needed for correctness while
 * staging; the image is fdatasynced in the background as it grows
 * (BackgroundSync) only to keep the disk writing while the network
 * delivers, which leaves little to sync at the end.
 *
 * At SNAPSHOT_END the namespace installs the image, and refuses it if the
 * checksum of the verified chunks differs from the manifest's: linked in as
 * the database file when the namespace has none (a fresh replica), else
 * written as one journal transaction, so readers switch atomically either
 * way.
 *
 * Crash between steps:
 * - after manifest.json, before any chunk: no chunk verifies; the next
 *   bootstrap asks for chunk 0 of the same snapshot;
 * - during or after a chunk write (a process crash keeps written chunks in
 *   the page cache; a power failure may lose or tear unsynced ones): a chunk
 *   whose CRC fails at resume is fetched again, with every chunk after it;
 * - during install: atomic, by the link or the namespace's journal protocol
 *   (crash tables in apply-worker.ts); the staging directory is removed only
 *   after it committed.
 */
import { mkdir, open, readFile, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import {
  FrameChecksumError,
  type SnapshotBeginMessage,
  type SnapshotChunkMessage,
  UnexpectedMessageError,
  crc32,
} from '@walwire/protocol';
import { BackgroundSync, type Logger, writeFileDurable } from '@walwire/runtime';
import type { Replica } from './replica.js';
import type { ReplicaNamespace } from './replica-namespace.js';

interface Staging {
  readonly manifest: SnapshotBeginMessage;
  readonly namespace: ReplicaNamespace;
  readonly dir: string;
  readonly image: FileHandle;
  /** Identifies this staging to the apply worker's verification (StagedChunks). */
  readonly id: number;
  /** Chunks written: always the prefix 0..staged-1. */
  staged: number;
  /** Chunks the apply worker verified and hashed: the prefix 0..verified-1. */
  verified: number;
  /** The verification request in flight, if any (at most one). */
  verifying: Promise<void> | null;
  verifyError: Error | null;
  /** Writeback of the image while it is staged. */
  readonly sync: BackgroundSync;
  /** Bytes received on this connection. */
  bytes: number;
  readonly startedAt: number;
  lastReportAt: number;
}

/** Bootstrap progress of one namespace (logs, status, the CLI's progress bar). */
export interface BootstrapProgress {
  readonly ns: string;
  readonly generation: string;
  readonly seq: number;
  readonly totalBytes: number;
  readonly stagedBytes: number;
  readonly percent: number;
  /** Over this connection's part of the transfer. */
  readonly bytesPerSec: number;
  /** Estimated time to the end of the transfer, or null before any data. */
  readonly etaMs: number | null;
  readonly resumedFromChunk: number;
}

export const STAGING_DIR = 'staging';
export const STAGED_IMAGE = 'image';

/**
 * Staging ids, unique in the process: a namespace's apply worker outlives
 * the replication client (and its installer) that staged for it.
 */
let nextStagingId = 1;

/**
 * What a namespace has staged: the manifest and the length of the prefix of
 * chunks whose bytes on disk match the manifest's CRCs.
 */
export async function readStaging(nsDir: string): Promise<{ manifest: SnapshotBeginMessage; staged: number } | null> {
  let manifest: SnapshotBeginMessage;
  try {
    manifest = JSON.parse(await readFile(join(nsDir, STAGING_DIR, 'manifest.json'), 'utf8')) as SnapshotBeginMessage;
  } catch {
    return null;
  }
  let staged = 0;
  let image: FileHandle | undefined;
  try {
    image = await open(join(nsDir, STAGING_DIR, STAGED_IMAGE), 'r');
    const chunkBytes = manifest.chunkPages * manifest.pageSize;
    const total = manifest.pageCount * manifest.pageSize;
    const buf = Buffer.allocUnsafe(chunkBytes);
    for (; staged < manifest.chunkCrcs.length; staged++) {
      const length = Math.min(chunkBytes, total - staged * chunkBytes);
      const { bytesRead } = await image.read(buf, 0, length, staged * chunkBytes);
      if (bytesRead !== length || crc32(buf.subarray(0, length)) !== manifest.chunkCrcs[staged]) break;
    }
  } catch {
    // No image yet: nothing staged.
  } finally {
    await image?.close();
  }
  return { manifest, staged };
}

function sameSnapshot(a: SnapshotBeginMessage, b: SnapshotBeginMessage): boolean {
  return (
    a.generation === b.generation &&
    a.seq === b.seq &&
    a.checksum === b.checksum &&
    a.pageSize === b.pageSize &&
    a.pageCount === b.pageCount &&
    a.chunkPages === b.chunkPages &&
    a.chunkCrcs.length === b.chunkCrcs.length &&
    a.chunkCrcs.every((c, i) => c === b.chunkCrcs[i])
  );
}

export class SnapshotInstaller {
  readonly #replica: Replica;
  readonly #logger: Logger;
  readonly #onProgress: (p: BootstrapProgress) => void;
  readonly #active = new Map<string, Promise<Staging>>();
  /**
   * Installs in progress. Staging is read only after them: a link install
   * makes the staged image the database file, and an fs open and close of
   * it then would drop the process's SQLite locks.
   */
  readonly #installing = new Map<string, Promise<unknown>>();
  readonly #progress = new Map<string, BootstrapProgress>();

  constructor(replica: Replica, logger: Logger, onProgress: (p: BootstrapProgress) => void = () => {}) {
    this.#replica = replica;
    this.#logger = logger;
    this.#onProgress = onProgress;
  }

  /** Progress of the bootstraps under way. */
  get progress(): readonly BootstrapProgress[] {
    return [...this.#progress.values()];
  }

  /** What `ns` has staged (readStaging), once no install of it is in progress. */
  async staged(ns: string): Promise<{ manifest: SnapshotBeginMessage; staged: number } | null> {
    await this.#installing.get(ns)?.catch(() => {});
    return readStaging((await this.#replica.namespace(ns)).dir);
  }

  /**
   * SNAPSHOT_BEGIN: a fresh snapshot (fromChunk 0) replaces any staging; a
   * resumed one (fromChunk > 0) must be the very snapshot staged, with at
   * least fromChunk chunks written.
   */
  begin(m: SnapshotBeginMessage): Promise<void> {
    const staging = (async (): Promise<Staging> => {
      await this.#installing.get(m.ns)?.catch(() => {});
      const ns = await this.#replica.namespace(m.ns);
      const dir = join(ns.dir, STAGING_DIR);
      if (m.fromChunk > 0) {
        const staged = await readStaging(ns.dir);
        if (staged === null || !sameSnapshot(staged.manifest, m) || staged.staged < m.fromChunk) {
          throw new UnexpectedMessageError(
            `SNAPSHOT_BEGIN for ${m.ns} resumes ${m.generation}@${m.seq} at chunk ${m.fromChunk}, but the staging holds ${staged === null ? 'nothing' : `${staged.manifest.generation}@${staged.manifest.seq} with ${staged.staged} chunks`}`,
          );
        }
      } else {
        await rm(dir, { recursive: true, force: true });
        await mkdir(dir, { recursive: true });
        await writeFileDurable(join(dir, 'manifest.json'), JSON.stringify(m));
      }
      const image = await open(join(dir, STAGED_IMAGE), m.fromChunk === 0 ? 'w+' : 'r+');
      this.#logger.info(
        { ns: m.ns, generation: m.generation, seq: m.seq, pages: m.pageCount, bytes: m.pageCount * m.pageSize, chunks: m.chunkCrcs.length, fromChunk: m.fromChunk },
        m.fromChunk > 0 ? 'bootstrap resumed' : 'bootstrap started',
      );
      const s: Staging = {
        manifest: m,
        namespace: ns,
        dir,
        image,
        id: nextStagingId++,
        staged: m.fromChunk,
        verified: 0,
        verifying: null,
        verifyError: null,
        sync: new BackgroundSync(image),
        bytes: 0,
        startedAt: Date.now(),
        lastReportAt: 0,
      };
      this.#report(s, true);
      // A resumed staging's prefix is verified from chunk 0 as well.
      this.#verify(s);
      return s;
    })();
    this.#active.set(m.ns, staging);
    return staging.then(() => undefined);
  }

  /** SNAPSHOT_CHUNK: verifies the CRC, writes the chunk in place, has it verified again as written, records progress. */
  chunk(m: SnapshotChunkMessage): Promise<void> {
    const previous = this.#active.get(m.ns);
    if (previous === undefined) return Promise.reject(new UnexpectedMessageError(`SNAPSHOT_CHUNK for ${m.ns} without SNAPSHOT_BEGIN`));
    // Chunks of one namespace are written in order: chain on the previous step.
    const next = previous.then(async (s) => {
      // The bytes crossed the wire under the frame's CRC-32, checked before
      // decoding; the apply worker checks them against the manifest's CRC as
      // read back from disk (#verify), before any install uses them. So no
      // third pass over them on this thread: only the claimed CRC is checked.
      const expected = s.manifest.chunkCrcs[m.index];
      if (m.crc !== expected) {
        throw new FrameChecksumError(`snapshot chunk ${m.index} of ${m.ns}: CRC ${m.crc} in the message, ${String(expected)} in the manifest`);
      }
      const chunkBytes = s.manifest.chunkPages * s.manifest.pageSize;
      const expectedLength = Math.min(chunkBytes, s.manifest.pageCount * s.manifest.pageSize - m.index * chunkBytes);
      if (m.data.length !== expectedLength) {
        throw new UnexpectedMessageError(`snapshot chunk ${m.index} of ${m.ns} has ${m.data.length} bytes, expected ${expectedLength}`);
      }
      if (m.index !== s.staged) throw new UnexpectedMessageError(`snapshot chunk ${m.index} of ${m.ns} out of order, expected ${s.staged}`);
      if (s.sync.error !== null) throw s.sync.error;
      if (s.verifyError !== null) throw s.verifyError;
      // No sync per chunk: resume trusts only chunks whose bytes on disk match
      // the manifest's CRC (readStaging), so an unsynced chunk lost to a power
      // failure is simply fetched again.
      await s.image.write(m.data, 0, m.data.length, m.index * chunkBytes);
      s.staged = m.index + 1;
      this.#verify(s);
      s.bytes += m.data.length;
      s.sync.wrote(m.data.length);
      this.#report(s, false);
      return s;
    });
    this.#active.set(m.ns, next);
    return next.then(() => undefined);
  }

  /** SNAPSHOT_END: verifies the image's database checksum, then installs it. */
  end(ns: string, generation: string, seq: number): Promise<void> {
    const previous = this.#active.get(ns);
    if (previous === undefined) return Promise.reject(new UnexpectedMessageError(`SNAPSHOT_END for ${ns} without SNAPSHOT_BEGIN`));
    const done = previous.then(async (s) => {
      const m = s.manifest;
      if (m.generation !== generation || m.seq !== seq) {
        throw new UnexpectedMessageError(`SNAPSHOT_END for ${ns} names ${generation}@${seq}, the snapshot is ${m.generation}@${m.seq}`);
      }
      if (s.staged !== m.chunkCrcs.length) throw new UnexpectedMessageError(`SNAPSHOT_END for ${ns} after ${s.staged} of ${m.chunkCrcs.length} chunks`);
      await s.sync.settled().catch(() => {}); // its failure is thrown below, once the image is closed
      await s.image.truncate(m.pageCount * m.pageSize);
      // Closed before the install: a link install makes this file the database.
      await s.image.close();
      if (s.sync.error !== null) throw s.sync.error;
      while (s.verifying !== null) await s.verifying;
      if (s.verifyError !== null) throw s.verifyError;
      const imagePath = join(s.dir, STAGED_IMAGE);
      // No sync here: the install syncs what it relies on (the link install
      // the image it links in; the journal install the database it writes).
      // It checks the checksum of the verified chunks against the manifest.
      await s.namespace.installSnapshot({
        generation,
        seq,
        checksum: m.checksum,
        pageSize: m.pageSize,
        pageCount: m.pageCount,
        imagePath,
        chunkPages: m.chunkPages,
        chunkCrcs: m.chunkCrcs,
        stagingId: s.id,
      });
      await rm(s.dir, { recursive: true, force: true });
      const ms = Date.now() - s.startedAt;
      this.#progress.delete(ns);
      this.#logger.info({ ns, generation, seq, bytes: s.bytes, ms, mbPerSec: Math.round(s.bytes / 1000 / Math.max(1, ms)) }, 'bootstrap complete: snapshot installed');
      return s;
    });
    this.#active.delete(ns);
    const installing = done.finally(() => {
      if (this.#installing.get(ns) === installing) this.#installing.delete(ns);
    });
    this.#installing.set(ns, installing);
    installing.catch(() => {});
    return done.then(() => undefined);
  }

  /**
   * Has the apply worker verify and hash the chunks written so far, one
   * request at a time; a request covers every chunk written before it.
   */
  #verify(s: Staging): void {
    if (s.verifying !== null || s.verifyError !== null || s.verified >= s.staged) return;
    const m = s.manifest;
    s.verifying = s.namespace
      .verifyStaged({ stagingId: s.id, imagePath: join(s.dir, STAGED_IMAGE), pageSize: m.pageSize, pageCount: m.pageCount, chunkPages: m.chunkPages, chunkCrcs: m.chunkCrcs, upTo: s.staged })
      .then(
        (verified) => {
          s.verified = verified;
          s.verifying = null;
          this.#verify(s);
        },
        (err: unknown) => {
          s.verifying = null;
          s.verifyError = err as Error;
        },
      );
  }

  /** Updates progress; logs it at most once a second (and at the start). */
  #report(s: Staging, force: boolean): void {
    const m = s.manifest;
    const total = m.pageCount * m.pageSize;
    const chunkBytes = m.chunkPages * m.pageSize;
    const stagedBytes = Math.min(total, s.staged * chunkBytes);
    const elapsed = Math.max(1, Date.now() - s.startedAt);
    const bytesPerSec = (s.bytes * 1000) / elapsed;
    const p: BootstrapProgress = {
      ns: m.ns,
      generation: m.generation,
      seq: m.seq,
      totalBytes: total,
      stagedBytes,
      percent: total === 0 ? 100 : Math.round((stagedBytes / total) * 1000) / 10,
      bytesPerSec: Math.round(bytesPerSec),
      etaMs: s.bytes === 0 ? null : Math.round(((total - stagedBytes) / bytesPerSec) * 1000),
      resumedFromChunk: m.fromChunk,
    };
    this.#progress.set(m.ns, p);
    this.#onProgress(p);
    const now = Date.now();
    if (force || now - s.lastReportAt >= 1000) {
      s.lastReportAt = now;
      this.#logger.info({ ...p, mbPerSec: Math.round(bytesPerSec / 1e5) / 10 }, 'bootstrap progress');
    }
  }

  /** The connection ended: close staged files (progress stays on disk for a resume). */
  abort(): void {
    this.#progress.clear();
    for (const staging of this.#active.values()) {
      staging.then((s) => s.image.close()).catch(() => {});
    }
    this.#active.clear();
  }
}
