/**
 * A snapshot image staged on disk for a link install, verified chunk by
 * chunk while the transfer goes on (the apply worker asks after each chunk
 * the main thread wrote), so the install has no pass over the image left
 * to do. Until it is linked in as the database the image is not a SQLite
 * file: opening and closing it drops no lock.
 */
import { closeSync, fdatasyncSync, fstatSync, openSync } from 'node:fs';
import { ApplyFailedError, DatabaseChecksum, DivergedError, FrameChecksumError, crc32, patchReplicaPage1 } from '@walwire/protocol';
import { failpoint, writeFullySync } from '@walwire/runtime';
import type { InstallImage, StagedChunks } from './apply-messages.js';
import { readFully } from './page-io.js';

export class StagedImage {
  /** The staging in progress: its chunks verified so far, and their checksum. */
  #state: { readonly id: number; readonly checksum: DatabaseChecksum; done: number } | null = null;

  /** Forgets the chunks verified so far (an install that does not link verifies as it writes). */
  reset(): void {
    this.#state = null;
  }

  /**
   * Verifies the chunks of a snapshot image staged since the last call with
   * the same stagingId (from chunk 0 for a new id): reads each back, checks
   * it against the manifest's CRC and adds its pages to the image's
   * checksum. The main thread asks after each chunk it wrote, so this runs
   * beside the transfer, and a link install has no pass over the image left
   * to do. Returns how many chunks are verified.
   */
  verify(chunks: StagedChunks): number {
    if (this.#state?.id !== chunks.stagingId) this.#state = { id: chunks.stagingId, checksum: new DatabaseChecksum(chunks.pageCount), done: 0 };
    const st = this.#state;
    const upTo = Math.min(chunks.upTo, chunks.chunkCrcs.length);
    if (upTo <= st.done) return st.done;
    const chunkBytes = chunks.chunkPages * chunks.pageSize;
    const total = chunks.pageCount * chunks.pageSize;
    const buf = Buffer.allocUnsafe(Math.min(chunkBytes, total));
    // Staging, not a database file (install links it in only after the last call): closing it is safe.
    const ifd = openSync(chunks.imagePath, 'r');
    try {
      for (; st.done < upTo; st.done++) {
        const data = buf.subarray(0, Math.min(chunkBytes, total - st.done * chunkBytes));
        readFully(ifd, data, data.length, st.done * chunkBytes);
        if (crc32(data) !== chunks.chunkCrcs[st.done]) {
          this.#state = null;
          // Like a frame that fails its CRC: the connection ends, and the
          // resumed bootstrap fetches this chunk again (readStaging stops at it).
          throw new FrameChecksumError(`staged snapshot chunk ${st.done} does not match the manifest's CRC as read back`);
        }
        st.checksum.addImage(data, chunks.pageSize, st.done * chunks.chunkPages + 1);
      }
    } finally {
      closeSync(ifd);
    }
    return st.done;
  }

  /**
   * Step 1 of a link install (ApplyWorker.installByLink): verifies the staged
   * image as read back, patches its page 1 for the replica and syncs it.
   * Returns the image's checksum. Chunks already verified by `verify` for
   * the image's stagingId are not read again; otherwise every chunk is read
   * back in slices of `verifyReadBytes`, checked and hashed now.
   */
  prepare(image: InstallImage, verifyReadBytes: number): DatabaseChecksum {
    const expectedBytes = image.pageCount * image.pageSize;
    const crcs = image.chunkCrcs;
    const chunkPages = image.chunkPages ?? Math.max(1, Math.floor(verifyReadBytes / image.pageSize));
    const chunkBytes = chunkPages * image.pageSize;
    const chunks = Math.ceil(image.pageCount / chunkPages);
    if (crcs !== undefined && crcs.length !== chunks) throw new ApplyFailedError(`staged snapshot has ${crcs.length} chunk CRCs for ${chunks} chunks`);
    // Verified and hashed chunk by chunk while staged: only page 1 is read
    // again. Otherwise every chunk is read back, checked and hashed now.
    const staged = this.#state;
    this.#state = null;
    const verified = image.stagingId !== undefined && staged?.id === image.stagingId && staged.done === chunks ? staged.checksum : null;
    const hashed = verified === null ? new DatabaseChecksum(image.pageCount) : null;
    // Not a database file yet: no SQLite lock can be on it, so opening and closing it is safe.
    const ifd = openSync(image.imagePath, 'r+');
    try {
      const size = fstatSync(ifd).size;
      if (size !== expectedBytes || size === 0) throw new ApplyFailedError(`staged snapshot image is ${size} bytes, expected ${expectedBytes}`);
      const buf = Buffer.allocUnsafe(Math.min(chunkBytes, expectedBytes));
      let page1: Uint8Array | undefined;
      if (verified !== null) {
        readFully(ifd, buf, image.pageSize, 0);
        page1 = patchReplicaPage1(buf.subarray(0, image.pageSize), 1);
      }
      for (let i = 0; hashed !== null && i < chunks; i++) {
        const data = buf.subarray(0, Math.min(chunkBytes, expectedBytes - i * chunkBytes));
        readFully(ifd, data, data.length, i * chunkBytes);
        if (crcs !== undefined && crc32(data) !== crcs[i]) {
          throw new DivergedError(`staged snapshot chunk ${i} of seq ${image.seq} does not match its CRC as read back`);
        }
        hashed.addImage(data, image.pageSize, i * chunkPages + 1);
        if (i === 0) page1 = patchReplicaPage1(data.subarray(0, image.pageSize), 1);
      }
      const checksum = verified ?? hashed!;
      if (checksum.value !== image.checksum) {
        throw new DivergedError(`snapshot image of seq ${image.seq} checksums to ${checksum.value}, expected ${image.checksum}`);
      }
      writeFullySync(ifd, page1!);
      failpoint('replica.install.link.after-patch');
      fdatasyncSync(ifd);
      return checksum;
    } finally {
      closeSync(ifd);
    }
  }
}
