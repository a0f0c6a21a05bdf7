/**
 * The database header on page 1 (sqlite.org/fileformat2.html §1.3) and the
 * bytes a replica patches.
 *
 * A replica is kept in rollback-journal mode, so it differs from the primary
 * (WAL mode) in exactly three places on page 1, all excluded from page
 * equality and from the database checksum:
 *   - bytes 18–19, file format write/read version: 2 (WAL) on the primary, 1 (legacy) on the replica;
 *   - bytes 24–27, file change counter: the replica keeps its own so other
 *     connections notice each apply (§1.3.11); the primary holds 0 in WAL mode;
 *   - bytes 92–95, version-valid-for: set equal to the change counter so the
 *     in-header database size at offset 28 stays valid (§1.3.8).
 */
import { DatabaseFormatError } from '../errors.js';

export const DATABASE_HEADER_BYTES = 100;

/** "SQLite format 3\0" (§1.3.1). */
export const DATABASE_MAGIC = Uint8Array.from([...'SQLite format 3'].map((c) => c.charCodeAt(0)).concat(0));

/** Page-1 byte ranges [start, end) that differ legitimately between primary and replica. */
export const REPLICA_VOLATILE_RANGES: ReadonlyArray<readonly [number, number]> = Object.freeze([
  [18, 20],
  [24, 28],
  [92, 96],
] as const);

export interface DatabaseHeader {
  readonly pageSize: number;
  /** 1 = legacy (rollback journal), 2 = WAL. */
  readonly writeVersion: number;
  readonly readVersion: number;
  readonly changeCounter: number;
  /** In-header database size in pages; valid only when `sizeValid`. */
  readonly pageCount: number;
  readonly versionValidFor: number;
  /** §1.3.8: the size is trusted only when change counter equals version-valid-for. */
  readonly sizeValid: boolean;
  readonly sqliteVersion: number;
}

/** Page sizes SQLite accepts: powers of two from 512 to 65536 (§1.3.2). */
export function isValidPageSize(n: number): boolean {
  return Number.isInteger(n) && n >= 512 && n <= 65536 && (n & (n - 1)) === 0;
}

/** Parses the 100-byte header at the start of page 1. */
export function parseDatabaseHeader(page1: Uint8Array): DatabaseHeader {
  if (page1.length < DATABASE_HEADER_BYTES) {
    throw new DatabaseFormatError(`database header needs ${DATABASE_HEADER_BYTES} bytes, received ${page1.length}`);
  }
  for (let i = 0; i < DATABASE_MAGIC.length; i++) {
    if (page1[i] !== DATABASE_MAGIC[i]) throw new DatabaseFormatError('page 1 does not start with "SQLite format 3"');
  }
  const view = new DataView(page1.buffer, page1.byteOffset, DATABASE_HEADER_BYTES);
  const rawPageSize = view.getUint16(16, false);
  const pageSize = rawPageSize === 1 ? 65536 : rawPageSize;
  if (!isValidPageSize(pageSize)) throw new DatabaseFormatError(`page 1 declares invalid page size ${rawPageSize}`);
  const changeCounter = view.getUint32(24, false);
  const versionValidFor = view.getUint32(92, false);
  return {
    pageSize,
    writeVersion: page1[18]!,
    readVersion: page1[19]!,
    changeCounter,
    pageCount: view.getUint32(28, false),
    versionValidFor,
    sizeValid: changeCounter === versionValidFor,
    sqliteVersion: view.getUint32(96, false),
  };
}

/**
 * Returns a copy of a primary page 1 as the replica stores it: rollback
 * journal mode (bytes 18–19 = 1) and `changeCounter` at offsets 24 and 92.
 */
export function patchReplicaPage1(page1: Uint8Array, changeCounter: number): Uint8Array {
  parseDatabaseHeader(page1);
  const out = Uint8Array.from(page1);
  out[18] = 1;
  out[19] = 1;
  const view = new DataView(out.buffer, out.byteOffset, DATABASE_HEADER_BYTES);
  view.setUint32(24, changeCounter >>> 0, false);
  view.setUint32(92, changeCounter >>> 0, false);
  return out;
}

/**
 * Writes zero into the volatile ranges of a page-1 image, in place. Both
 * sides hash page 1 in this form, so primary and replica checksums agree.
 */
export function normalizePage1(page1: Uint8Array): void {
  for (const [start, end] of REPLICA_VOLATILE_RANGES) page1.fill(0, start, end);
}

/**
 * The page holding the lock byte range at offset 2^30 (§1.3: "lock-byte
 * page"). SQLite never stores content there, so checksums skip it.
 */
export function lockBytePage(pageSize: number): number {
  return Math.floor(0x40000000 / pageSize) + 1;
}
