/**
 * The convergence check (design.md, "Fault injection vocabulary"): page-exact
 * equality outside the replica-volatile page-1 bytes, PRAGMA integrity_check,
 * and byte-exact blobs.
 *
 * Images are taken through SQLite's backup API from a read-only connection,
 * which copies each page verbatim and sees the primary's WAL content, so the
 * primary side is what SQLite itself reports. The copy goes to a temp file
 * that no connection in this process has open (the POSIX-lock trap).
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { REPLICA_VOLATILE_RANGES, parseDatabaseHeader } from '@walwire/protocol';
import { makeTempDir } from './tmp.js';

/** SQLite's own view of a database: its pages as one buffer. */
export async function readDatabaseImage(dbPath: string, busyTimeoutMs = 10_000): Promise<Buffer> {
  const dir = makeTempDir('walwire-image-');
  const copy = join(dir, 'image.db');
  const db = new Database(dbPath, { readonly: true, fileMustExist: true, timeout: busyTimeoutMs });
  try {
    await db.backup(copy);
  } finally {
    db.close();
  }
  const image = readFileSync(copy);
  rmSync(dir, { recursive: true, force: true });
  return image;
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
