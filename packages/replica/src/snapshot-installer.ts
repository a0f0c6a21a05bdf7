/**
 * Receives a snapshot stream for one namespace and installs it.
 *
 * Staging, under `<namespace dir>/staging/`:
 *   manifest.json   the SNAPSHOT_BEGIN fields (generation, seq, geometry, chunk CRCs)
 *   image           the database image, chunk i at byte i · chunkPages · pageSize
 *   progress.json   the intent record: chunks durably staged so far
 *
 * Each chunk's CRC-32 is checked against both its message and the manifest
 * before it is written; the image write is fsynced before progress.json
 * records the chunk. At SNAPSHOT_END the whole image's database checksum is
 * verified against the manifest, and only then is it installed through the
 * namespace (one journal transaction, so readers switch atomically).
 *
 * Crash between steps:
 * - after manifest.json, before any chunk: the next connection finds a
 *   manifest with no progress and asks for the snapshot from chunk 0;
 * - after an image write, before progress.json: that chunk is simply
 *   fetched and written again (idempotent positional write);
 * - after progress.json: the chunk counts as staged; a resumed stream starts
 *   at the first chunk not recorded;
 * - during install: the namespace's journal protocol makes the install
 *   atomic; the staging directory is removed only after it committed.
 */
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import {
  DatabaseChecksum,
  DivergedError,
  FrameChecksumError,
  type SnapshotBeginMessage,
  type SnapshotChunkMessage,
  UnexpectedMessageError,
  crc32,
} from '@walwire/protocol';
import { type Logger, writeFileDurable } from '@walwire/runtime';
import type { Replica } from './replica.js';

interface Staging {
  readonly manifest: SnapshotBeginMessage;
  readonly dir: string;
  readonly image: FileHandle;
  staged: number[];
  bytes: number;
  readonly startedAt: number;
}

export const STAGING_DIR = 'staging';

export class SnapshotInstaller {
  readonly #replica: Replica;
  readonly #logger: Logger;
  readonly #active = new Map<string, Promise<Staging>>();

  constructor(replica: Replica, logger: Logger) {
    this.#replica = replica;
    this.#logger = logger;
  }

  /** SNAPSHOT_BEGIN: prepares the staging directory and records the manifest. */
  begin(m: SnapshotBeginMessage): Promise<void> {
    const staging = (async (): Promise<Staging> => {
      const ns = await this.#replica.namespace(m.ns);
      const dir = join(ns.dir, STAGING_DIR);
      if (m.fromChunk === 0) await rm(dir, { recursive: true, force: true });
      await mkdir(dir, { recursive: true });
      await writeFileDurable(join(dir, 'manifest.json'), JSON.stringify({ ...m, chunkCrcs: m.chunkCrcs }));
      const image = await open(join(dir, 'image'), m.fromChunk === 0 ? 'w+' : 'r+');
      this.#logger.info(
        { ns: m.ns, generation: m.generation, seq: m.seq, pages: m.pageCount, bytes: m.pageCount * m.pageSize, fromChunk: m.fromChunk },
        'snapshot started',
      );
      return { manifest: m, dir, image, staged: [], bytes: 0, startedAt: Date.now() };
    })();
    this.#active.set(m.ns, staging);
    return staging.then(() => undefined);
  }

  /** SNAPSHOT_CHUNK: verifies the CRC, writes the chunk in place, fsyncs, records progress. */
  chunk(m: SnapshotChunkMessage): Promise<void> {
    const previous = this.#active.get(m.ns);
    if (previous === undefined) return Promise.reject(new UnexpectedMessageError(`SNAPSHOT_CHUNK for ${m.ns} without SNAPSHOT_BEGIN`));
    // Chunks of one namespace are written in order: chain on the previous step.
    const next = previous.then(async (s) => {
      const expected = s.manifest.chunkCrcs[m.index];
      const actual = crc32(m.data);
      if (actual !== m.crc || actual !== expected) {
        throw new FrameChecksumError(`snapshot chunk ${m.index} of ${m.ns}: CRC ${actual} does not match message ${m.crc} / manifest ${String(expected)}`);
      }
      const chunkBytes = s.manifest.chunkPages * s.manifest.pageSize;
      const expectedLength = Math.min(chunkBytes, s.manifest.pageCount * s.manifest.pageSize - m.index * chunkBytes);
      if (m.data.length !== expectedLength) {
        throw new UnexpectedMessageError(`snapshot chunk ${m.index} of ${m.ns} has ${m.data.length} bytes, expected ${expectedLength}`);
      }
      await s.image.write(m.data, 0, m.data.length, m.index * chunkBytes);
      await s.image.datasync();
      s.staged.push(m.index);
      s.bytes += m.data.length;
      await writeFileDurable(join(s.dir, 'progress.json'), JSON.stringify({ generation: s.manifest.generation, seq: s.manifest.seq, staged: s.staged.length + s.manifest.fromChunk }));
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
      await s.image.truncate(m.pageCount * m.pageSize);
      await s.image.datasync();
      await s.image.close();
      const imagePath = join(s.dir, 'image');
      const checksum = await imageChecksum(imagePath, m.pageSize);
      if (checksum !== m.checksum) {
        throw new DivergedError(`snapshot image of ${ns} at seq ${seq} has checksum ${checksum}, manifest says ${m.checksum}`);
      }
      const namespace = await this.#replica.namespace(ns);
      await namespace.installSnapshot({ generation, seq, checksum, pageSize: m.pageSize, pageCount: m.pageCount, imagePath });
      await rm(s.dir, { recursive: true, force: true });
      const ms = Date.now() - s.startedAt;
      this.#logger.info({ ns, generation, seq, bytes: s.bytes, ms, mbPerSec: Math.round(s.bytes / 1000 / Math.max(1, ms)) }, 'snapshot installed');
      return s;
    });
    this.#active.delete(ns);
    return done.then(() => undefined);
  }

  /** The connection ended: close staged files (progress stays on disk for a resume). */
  abort(): void {
    for (const staging of this.#active.values()) {
      staging.then((s) => s.image.close()).catch(() => {});
    }
    this.#active.clear();
  }
}

/** The database checksum of an image file, read in large slices. */
export async function imageChecksum(path: string, pageSize: number): Promise<string> {
  const sum = new DatabaseChecksum();
  let pgno = 1;
  let carry = Buffer.alloc(0);
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * 1024 * 1024 })) {
    const data = carry.length ? Buffer.concat([carry, chunk as Buffer]) : (chunk as Buffer);
    const whole = data.length - (data.length % pageSize);
    sum.addImage(data.subarray(0, whole), pageSize, pgno);
    pgno += whole / pageSize;
    carry = Buffer.from(data.subarray(whole));
  }
  return sum.value;
}

/** Reads a staged manifest, if any (used to resume a bootstrap). */
export async function readStagedManifest(dir: string): Promise<SnapshotBeginMessage | null> {
  try {
    return JSON.parse(await readFile(join(dir, STAGING_DIR, 'manifest.json'), 'utf8')) as SnapshotBeginMessage;
  } catch {
    return null;
  }
}
