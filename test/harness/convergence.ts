/**
 * The convergence check (design.md, "Fault injection vocabulary"): page-exact
 * equality outside the replica-volatile page-1 bytes, PRAGMA integrity_check,
 * and byte-exact blobs.
 *
 * SQLite's own view of a database is taken by letting SQLite recover a
 * private copy: copy the -wal (first, so a concurrent checkpoint cannot make
 * the pair inconsistent), the -journal and the database file into a temp
 * directory, open the copy read-write (SQLite replays the WAL or rolls back a
 * hot journal), checkpoint with TRUNCATE, close, and read the file. That
 * copies pages verbatim. The backup API is NOT used: it rewrites page-1
 * bytes 40–43 (schema cookie) and 96–99 (library version) in the copy.
 *
 * Copying opens and closes descriptors on the database file, which drops
 * this process's POSIX locks on it (design.md): call these only while no
 * connection in the test process has the database open.
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPLICA_VOLATILE_RANGES, parseDatabaseHeader } from '@walwire/protocol';
import { makeTempDir } from './tmp.js';

/** SQLite's recovered image of a database given the raw bytes of its files. */
export function recoverImage(files: { db: Uint8Array; wal?: Uint8Array; journal?: Uint8Array }): Buffer {
  const dir = makeTempDir('walwire-image-');
  const copy = join(dir, 'image.db');
  try {
    writeFileSync(copy, files.db);
    if (files.wal) writeFileSync(`${copy}-wal`, files.wal);
    if (files.journal) writeFileSync(`${copy}-journal`, files.journal);
    const db = new Database(copy, { timeout: 10_000 });
    try {
      db.prepare('SELECT count(*) FROM sqlite_schema').get();
      if (files.wal) db.pragma('wal_checkpoint(TRUNCATE)');
    } finally {
      db.close();
    }
    return readFileSync(copy);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Whether `<dbPath>-journal` is a hot journal by its own bytes: it exists and
 * its first byte is not zero (pager.c hasHotJournal; the replica keeps the
 * file between batches with a zeroed header, journal-file.ts).
 */
export function journalIsHot(dbPath: string): boolean {
  const path = `${dbPath}-journal`;
  if (!existsSync(path)) return false;
  const bytes = readFileSync(path);
  return bytes.length > 0 && bytes[0] !== 0;
}

/** SQLite's own view of the database at `dbPath`: its pages as one buffer. */
export async function readDatabaseImage(dbPath: string): Promise<Buffer> {
  const read = (p: string): Buffer | undefined => (existsSync(p) ? readFileSync(p) : undefined);
  const wal = read(`${dbPath}-wal`);
  const journal = read(`${dbPath}-journal`);
  const db = readFileSync(dbPath);
  return recoverImage({ db, ...(wal?.length ? { wal } : {}), ...(journal?.length ? { journal } : {}) });
}

/** Pages (1-based) that differ between two images, ignoring the replica-volatile page-1 bytes. */
export function diffImages(a: Uint8Array, b: Uint8Array): { pageSize: number; pages: number[]; sizes: [number, number] } {
  const pageSize = parseDatabaseHeader(a).pageSize;
  const count = Math.max(a.length, b.length) / pageSize;
  const pages: number[] = [];
  for (let p = 0; p < count; p++) {
    const x = a.subarray(p * pageSize, (p + 1) * pageSize);
    const y = b.subarray(p * pageSize, (p + 1) * pageSize);
    if (!pageEqual(x, y, p === 0)) pages.push(p + 1);
  }
  return { pageSize, pages, sizes: [a.length / pageSize, b.length / pageSize] };
}

function pageEqual(x: Uint8Array, y: Uint8Array, isPage1: boolean): boolean {
  if (x.length !== y.length) return false;
  if (!isPage1) return Buffer.compare(x, y) === 0;
  let from = 0;
  for (const [start, end] of REPLICA_VOLATILE_RANGES) {
    if (Buffer.compare(x.subarray(from, start), y.subarray(from, start)) !== 0) return false;
    from = end;
  }
  return Buffer.compare(x.subarray(from), y.subarray(from)) === 0;
}

/** PRAGMA integrity_check through a read-only connection; 'ok' when healthy. */
export function integrityCheck(dbPath: string): string {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true, timeout: 10_000 });
  try {
    return (db.pragma('integrity_check', { simple: false }) as { integrity_check: string }[])
      .map((r) => r.integrity_check)
      .join('; ');
  } finally {
    db.close();
  }
}

export function sha256File(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** Blob ids whose content differs or is missing between two blob directories. */
export function diffBlobDirs(primaryDir: string, replicaDir: string): string[] {
  const list = (dir: string): string[] =>
    existsSync(dir) ? readdirSync(dir).filter((n) => !n.startsWith('.') && !n.endsWith('.tmp')) : [];
  const a = new Set(list(primaryDir));
  const b = new Set(list(replicaDir));
  const bad: string[] = [];
  for (const id of new Set([...a, ...b])) {
    if (!a.has(id) || !b.has(id) || sha256File(join(primaryDir, id)) !== sha256File(join(replicaDir, id))) bad.push(id);
  }
  return bad.sort();
}

export interface ConvergenceInput {
  readonly primaryDb: string;
  readonly replicaDb: string;
  readonly primaryBlobs?: string;
  readonly replicaBlobs?: string;
}

/** Throws a descriptive error unless the replica has converged with the primary. */
export async function assertConverged(input: ConvergenceInput): Promise<void> {
  const [a, b] = [await readDatabaseImage(input.primaryDb), await readDatabaseImage(input.replicaDb)];
  const diff = diffImages(a, b);
  if (diff.pages.length > 0) {
    throw new Error(
      `replica differs from primary in ${diff.pages.length} pages (first: ${diff.pages.slice(0, 10).join(', ')}); sizes ${diff.sizes[0]} vs ${diff.sizes[1]} pages`,
    );
  }
  const check = integrityCheck(input.replicaDb);
  if (check !== 'ok') throw new Error(`replica integrity_check: ${check}`);
  if (input.primaryBlobs !== undefined && input.replicaBlobs !== undefined) {
    const bad = diffBlobDirs(input.primaryBlobs, input.replicaBlobs);
    if (bad.length > 0) throw new Error(`${bad.length} blobs differ or are missing: ${bad.slice(0, 10).join(', ')}`);
  }
}
