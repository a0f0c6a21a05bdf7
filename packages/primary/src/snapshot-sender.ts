/**
 * Streams a snapshot of one namespace: SNAPSHOT_BEGIN (the manifest, with a
 * CRC-32 per chunk), SNAPSHOT_CHUNK × n, SNAPSHOT_END. Reads the image in
 * chunk-sized slices, so memory stays at a few chunks whatever the database
 * size, and respects the same unflushed-bytes window as the log sender.
 *
 * The manifest's CRCs come from the image's meta when it stores them for
 * this chunk size (computed when the image was published), so the image is
 * read once; otherwise a first pass computes them, and the second checks
 * each chunk against them as it is sent. CRCs computed from the image itself
 * would vouch for a damaged image, so that first pass also computes the
 * database checksum and compares it with the one the image was published
 * with (SnapshotDamagedError if they differ). Each chunk is read straight into
 * its frame (chunkFrame), CRC'd once, and checked against the manifest's
 * CRC before it is sent: an image whose bytes no longer match their stored
 * CRCs fails here with SnapshotDamagedError naming the chunk, rather than on
 * every replica as a frame that fails its check (the envelope CRC is
 * combined from the chunk's CRC); the session then has the namespace
 * rebuild the image (PrimaryNamespace.rebuildDamagedSnapshot).
 */
import { DatabaseChecksum, MessageType, type ProtocolLimits, SnapshotDamagedError, chunkFrame, crc32, encodeMessage } from '@walwire/protocol';
import type { Logger } from '@walwire/runtime';
import type { FrameSink } from './sender.js';

/** A consistent database image at `seq`; `read` returns exactly the bytes asked for. */
export interface SnapshotSource {
  readonly generation: string;
  readonly seq: number;
  readonly checksum: string;
  readonly pageSize: number;
  readonly pageCount: number;
  /** CRC-32 of each chunk of chunkPages pages, when the image stores them. */
  readonly chunkPages?: number;
  readonly chunkCrcs?: readonly number[];
  /** Reads into `into` when given (at least `length` bytes), else into a new buffer. */
  read(offset: number, length: number, into?: Buffer): Promise<Uint8Array>;
  close(): Promise<void>;
}

export async function streamSnapshot(options: {
  ns: string;
  source: SnapshotSource;
  sink: FrameSink;
  limits: ProtocolLimits;
  chunkBytes: number;
  windowBytes: number;
  logger: Logger;
  reason: string;
  fromChunk?: number;
  /** Runs after the last chunk and before SNAPSHOT_END (bootstrap blobs). */
  beforeEnd?: () => Promise<void>;
}): Promise<{ bytes: number }> {
  const { ns, source, sink, limits, logger } = options;
  try {
    const chunkPages = Math.max(1, Math.floor(Math.min(options.chunkBytes, limits.maxChunkBytes) / source.pageSize));
    const chunkBytes = chunkPages * source.pageSize;
    const total = source.pageCount * source.pageSize;
    const chunkCount = Math.ceil(source.pageCount / chunkPages);
    const stored = source.chunkPages === chunkPages && source.chunkCrcs?.length === chunkCount ? source.chunkCrcs : undefined;
    const crcs: number[] = stored === undefined ? [] : [...stored];
    if (stored === undefined) {
      const buf = Buffer.allocUnsafe(Math.min(chunkBytes, Math.max(total, 1)));
      const checksum = new DatabaseChecksum(source.pageCount);
      for (let i = 0; i < chunkCount; i++) {
        const len = Math.min(chunkBytes, total - i * chunkBytes);
        const data = await source.read(i * chunkBytes, len, buf);
        crcs.push(crc32(data));
        checksum.addImage(data, source.pageSize, i * chunkPages + 1);
      }
      if (checksum.value !== source.checksum) {
        throw new SnapshotDamagedError(
          `snapshot image of ${ns} (generation ${source.generation}, seq ${source.seq}) checksums to ${checksum.value}, published as ${source.checksum}, and stores no chunk CRCs for chunks of ${chunkPages} pages: damaged on disk; it is rebuilt from the database`,
        );
      }
    }
    const fromChunk = options.fromChunk ?? 0;
    let unflushed = 0;
    let wake: (() => void) | null = null;
    let failure: Error | null = null;
    let sent = 0;
    const send = async (frame: Buffer): Promise<void> => {
      while (unflushed >= options.windowBytes && !sink.closed) await new Promise<void>((r) => (wake = r));
      if (failure) throw failure;
      if (sink.closed) throw new Error(`connection closed during the snapshot of ${ns}`);
      unflushed += frame.length;
      sent += frame.length;
      sink.send(frame, (err) => {
        unflushed -= frame.length;
        if (err) failure = err;
        wake?.();
      });
    };
    const started = Date.now();
    logger.info({ ns, generation: source.generation, seq: source.seq, bytes: total, chunks: chunkCount, reason: options.reason }, 'snapshot stream started');
    const head = { ns, generation: source.generation, seq: source.seq };
    await send(
      encodeMessage(
        { type: MessageType.SNAPSHOT_BEGIN, ...head, pageSize: source.pageSize, pageCount: source.pageCount, checksum: source.checksum, chunkPages, chunkCrcs: crcs, fromChunk },
        limits,
      ),
    );
    for (let i = fromChunk; i < chunkCount; i++) {
      const frame = chunkFrame({ type: MessageType.SNAPSHOT_CHUNK, ...head, index: i }, Math.min(chunkBytes, total - i * chunkBytes), limits);
      const data = await source.read(i * chunkBytes, frame.data.length, frame.data);
      if (data.buffer !== frame.data.buffer || data.byteOffset !== frame.data.byteOffset) frame.data.set(data);
      const crc = crc32(frame.data);
      // The source must be immutable while streamed; a changed chunk would not match its manifest CRC.
      if (crc !== crcs[i]) {
        throw new SnapshotDamagedError(
          `snapshot image of ${ns} (generation ${source.generation}, seq ${source.seq}) does not match its stored CRC at chunk ${i} of ${chunkCount}: damaged on disk (or changed while streaming); it is rebuilt from the database`,
        );
      }
      await send(frame.seal(crc));
    }
    await options.beforeEnd?.();
    if (sink.closed) throw new Error(`connection closed during the snapshot of ${ns}`);
    await send(encodeMessage({ type: MessageType.SNAPSHOT_END, ...head }, limits));
    logger.info({ ns, seq: source.seq, bytes: sent, ms: Date.now() - started }, 'snapshot stream sent');
    return { bytes: sent };
  } finally {
    await source.close();
  }
}
