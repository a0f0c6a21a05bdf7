/**
 * The database checksum: an order-independent 64-bit digest of a database
 * image, maintained incrementally as pages change (after LiteFS's design,
 * with a non-linear page hash).
 *
 *     pageHash(n, P) = first 8 bytes of SHA-256(u32be(n) ‖ P')
 *     checksum(DB)   = XOR of pageHash(n, page n) over the pages present
 *
 * P' is P, except that page 1 has its replica-volatile bytes zeroed
 * (page1.ts), so a primary and its replica agree. XOR makes the digest
 * independent of order and lets a page be removed by hashing out its old
 * version. A cryptographic page hash avoids the blind spot of a linear
 * (CRC) one, where the same bit flipped at the same offset of two pages
 * cancels out. The lock-byte page never holds content and is never hashed.
 *
 * The checksum is rendered as 16 lowercase hex digits (hi word first).
 */
import { hash } from 'node:crypto';
import { lockBytePage, normalizePage1 } from './page1.js';

const scratch = { buf: new Uint8Array(4 + 4096) };

/** The 64-bit hash of page `pgno` with contents `data`, as [hi, lo] u32 words. */
export function pageHash(pgno: number, data: Uint8Array): [number, number] {
  // Sized to the page exactly (pages of one database share a size), so the
  // hash input is the scratch itself: no view allocated per page.
  const len = 4 + data.length;
  if (scratch.buf.length !== len) scratch.buf = new Uint8Array(len);
  const input = scratch.buf;
  input[0] = pgno >>> 24;
  input[1] = (pgno >>> 16) & 0xff;
  input[2] = (pgno >>> 8) & 0xff;
  input[3] = pgno & 0xff;
  input.set(data, 4);
  if (pgno === 1) normalizePage1(input.subarray(4));
  const digest = hash('sha256', input, 'buffer');
  return [digest.readUInt32BE(0), digest.readUInt32BE(4)];
}

/** Renders a [hi, lo] pair as 16 hex digits. */
export function formatChecksum(hi: number, lo: number): string {
  return (hi >>> 0).toString(16).padStart(8, '0') + (lo >>> 0).toString(16).padStart(8, '0');
}

/**
 * Incremental database checksum. Remembers each page's hash (8 bytes a page),
 * so replacing or truncating pages never needs their old contents.
 */
export class DatabaseChecksum {
  #hi = 0;
  #lo = 0;
  /** Page hashes, two words a page, index (pgno - 1) * 2. (0, 0) means absent. */
  #hashes: Uint32Array;
  #pageCount = 0;

  constructor(initialPages = 1024) {
    this.#hashes = new Uint32Array(Math.max(2, initialPages * 2));
  }

  /** Highest page number set (and not truncated away) so far. */
  get pageCount(): number {
    return this.#pageCount;
  }

  /** Current checksum as 16 hex digits. */
  get value(): string {
    return formatChecksum(this.#hi, this.#lo);
  }

  /** Replaces page `pgno` (1-based) with `data`. */
  setPage(pgno: number, data: Uint8Array): void {
    const [hi, lo] = pageHash(pgno, data);
    this.#ensure(pgno);
    const i = (pgno - 1) * 2;
    this.#hi = (this.#hi ^ this.#hashes[i]! ^ hi) >>> 0;
    this.#lo = (this.#lo ^ this.#hashes[i + 1]! ^ lo) >>> 0;
    this.#hashes[i] = hi;
    this.#hashes[i + 1] = lo;
    if (pgno > this.#pageCount) this.#pageCount = pgno;
  }

  /**
   * Sets the consecutive pages held in `image`, starting at `firstPgno`,
   * skipping the lock-byte page. Used to checksum a whole file read in large
   * slices (start-up verification, snapshots).
   */
  addImage(image: Uint8Array, pageSize: number, firstPgno = 1): void {
    const lockPage = lockBytePage(pageSize);
    const count = Math.floor(image.length / pageSize);
    for (let k = 0; k < count; k++) {
      const pgno = firstPgno + k;
      if (pgno !== lockPage) this.setPage(pgno, image.subarray(k * pageSize, (k + 1) * pageSize));
    }
  }

  /** Removes every page above `pageCount` (a shrinking commit). */
  truncate(pageCount: number): void {
    for (let pgno = pageCount + 1; pgno <= this.#pageCount; pgno++) {
      const i = (pgno - 1) * 2;
      this.#hi = (this.#hi ^ this.#hashes[i]!) >>> 0;
      this.#lo = (this.#lo ^ this.#hashes[i + 1]!) >>> 0;
      this.#hashes[i] = 0;
      this.#hashes[i + 1] = 0;
    }
    if (pageCount < this.#pageCount) this.#pageCount = pageCount;
  }

  /** Independent copy, e.g. to compute a candidate state without committing it. */
  clone(): DatabaseChecksum {
    const copy = new DatabaseChecksum(0);
    copy.#hashes = this.#hashes.slice();
    copy.#hi = this.#hi;
    copy.#lo = this.#lo;
    copy.#pageCount = this.#pageCount;
    return copy;
  }

  #ensure(pgno: number): void {
    if (pgno * 2 <= this.#hashes.length) return;
    let size = this.#hashes.length;
    while (size < pgno * 2) size *= 2;
    const grown = new Uint32Array(size);
    grown.set(this.#hashes);
    this.#hashes = grown;
  }
}
