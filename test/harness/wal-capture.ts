/**
 * Test-only source of primary transactions, independent of @walwire/primary:
 * cut a checkpoint-free WAL (fixtures/replica-source.ts) into `Txn` records
 * exactly as the primary ships them, and ask SQLite itself for the database
 * image at any of those seqs.
 *
 * seq 1 is the database file as it was before the first WAL frame (all its
 * pages); every later seq is `group` consecutive WAL commits with pages
 * deduplicated (last version wins) and none beyond the commit size. Each
 * Txn carries the database checksum after it, from a DatabaseChecksum
 * seeded with the file's pages and advanced commit by commit.
 */
import Database from 'better-sqlite3';
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  DatabaseChecksum,
  type PageImage,
  type Txn,
  initialWalState,
  lockBytePage,
  parseDatabaseHeader,
  parseWalHeader,
  scanWalFrames,
} from '@walwire/protocol';
import { spawnFixture } from './processes.js';
import { makeTempDir } from './tmp.js';

export interface CapturedSource {
  /** Directory holding source.db and source.db-wal. */
  readonly dir: string;
  readonly pageSize: number;
  /** seq k is txns[k - 1]. */
  readonly txns: readonly Txn[];
  /** Per seq (index seq - 1): WAL bytes that hold it (0 for the base image). */
  readonly walEnds: readonly number[];
}

export interface SourceSpec {
  readonly pageSize?: number;
  readonly statements?: readonly string[];
  /** Transfers between accounts (rows padded so the table spans many pages: a torn read breaks the sum). */
  readonly bank?: { readonly accounts: number; readonly txns: number; readonly seed?: number; readonly padBytes?: number };
}

/** Runs fixtures/replica-source.ts in its own process and captures its WAL. */
export async function captureSource(spec: SourceSpec, options: { group?: number } = {}): Promise<CapturedSource> {
  const dir = makeTempDir('walwire-source-');
  const db = join(dir, 'writer.db');
  await spawnFixture('replica-source', [JSON.stringify({ db, outDir: dir, ...spec })]).succeeded(120_000);
  return captureWal(dir, options);
}

/** Cuts `dir`/source.db-wal into seqs over the base `dir`/source.db. */
export function captureWal(dir: string, options: { group?: number } = {}): CapturedSource {
  const group = options.group ?? 1;
  const base = readFileSync(join(dir, 'source.db'));
  const wal = readFileSync(join(dir, 'source.db-wal'));
  const header = parseWalHeader(wal);
  const pageSize = header.pageSize;
  const checksum = new DatabaseChecksum();
  const txns: Txn[] = [];
  const walEnds: number[] = [];
  let seq = 0;
  let size = 0;
  if (base.length > 0) {
    if (parseDatabaseHeader(base).pageSize !== pageSize) throw new Error('database and WAL page sizes differ');
    const pages: PageImage[] = [];
    size = base.length / pageSize;
    const lockPage = lockBytePage(pageSize);
    for (let p = 1; p <= size; p++) if (p !== lockPage) pages.push({ pgno: p, data: base.subarray((p - 1) * pageSize, p * pageSize) });
    checksum.addImage(base, pageSize);
    txns.push({ seq: ++seq, commitSize: size, checksum: checksum.value, commitTime: Date.now(), pages });
    walEnds.push(0);
  }
  const scan = scanWalFrames(wal, 0, initialWalState(header));
  for (let i = 0; i < scan.commits.length; i += group) {
    const commits = scan.commits.slice(i, i + group);
    const pages = new Map<number, Uint8Array>();
    for (const c of commits) {
      for (const f of c.frames) {
        checksum.setPage(f.pgno, f.page);
        pages.set(f.pgno, f.page);
      }
      if (c.commitSize < size) checksum.truncate(c.commitSize);
      for (const pgno of [...pages.keys()]) if (pgno > c.commitSize) pages.delete(pgno);
      size = c.commitSize;
    }
    const last = commits[commits.length - 1]!;
    txns.push({
      seq: ++seq,
      commitSize: last.commitSize,
      checksum: checksum.value,
      commitTime: Date.now(),
      pages: [...pages.entries()].sort((a, b) => a[0] - b[0]).map(([pgno, data]) => ({ pgno, data })),
    });
    walEnds.push(last.endOffset);
  }
  return { dir, pageSize, txns, walEnds };
}

const imageCache = new WeakMap<CapturedSource, Map<number, Buffer>>();

/**
 * SQLite's own image of the source database at `seq`: a copy of the base
 * file plus the WAL cut just past that seq's last commit, opened by SQLite
 * (which recovers the WAL), checkpointed with TRUNCATE (SQLite copies each
 * page verbatim and sets the file size to the commit size), then read.
 *
 * Not the backup API: sqlite3_backup rewrites the destination's schema
 * cookie (page 1 offset 40) to its old value + 1, so a backup image is not
 * byte-exact on page 1.
 */
export async function sqliteImageAt(source: CapturedSource, seq: number): Promise<Buffer> {
  let cache = imageCache.get(source);
  if (cache === undefined) imageCache.set(source, (cache = new Map()));
  const hit = cache.get(seq);
  if (hit !== undefined) return hit;
  const end = source.walEnds[seq - 1];
  if (end === undefined) throw new Error(`seq ${seq} is not in the capture (1..${source.txns.length})`);
  const dir = makeTempDir('walwire-image-at-');
  const copy = join(dir, 'at.db');
  copyFileSync(join(source.dir, 'source.db'), copy);
  if (end > 0) writeFileSync(`${copy}-wal`, readFileSync(join(source.dir, 'source.db-wal')).subarray(0, end));
  const db = new Database(copy);
  try {
    db.pragma('wal_checkpoint(TRUNCATE)');
  } finally {
    db.close();
  }
  const image = readFileSync(copy);
  cache.set(seq, image);
  return image;
}

/**
 * The replica database's bytes, read directly. Only while no apply is in
 * flight (the daemon is idle or dead with its journal rolled back), and
 * only from a process that holds no SQLite lock on the file (closing the
 * read descriptor would drop it).
 */
export function readReplicaImage(dbPath: string): Buffer {
  return existsSync(dbPath) ? readFileSync(dbPath) : Buffer.alloc(0);
}

/**
 * Writes txns to a file a child process loads with loadTxns: a u32 length,
 * a JSON index (headers and page numbers), then every page's bytes.
 */
export function saveTxns(path: string, txns: readonly Txn[]): void {
  const index = JSON.stringify(txns.map((t) => ({ seq: t.seq, commitSize: t.commitSize, checksum: t.checksum, commitTime: t.commitTime, pgnos: t.pages.map((p) => p.pgno) })));
  const head = Buffer.alloc(4);
  const json = Buffer.from(index);
  head.writeUInt32BE(json.length, 0);
  writeFileSync(path, Buffer.concat([head, json, ...txns.flatMap((t) => t.pages.map((p) => p.data))]));
}

export function loadTxns(path: string): Txn[] {
  const file = readFileSync(path);
  const jsonLen = file.readUInt32BE(0);
  const index = JSON.parse(file.subarray(4, 4 + jsonLen).toString('utf8')) as (Omit<Txn, 'pages'> & { pgnos: number[] })[];
  let at = 4 + jsonLen;
  const total = index.reduce((n, t) => n + t.pgnos.length, 0);
  const pageSize = total === 0 ? 0 : (file.length - at) / total;
  return index.map(({ pgnos, ...t }) => ({
    ...t,
    pages: pgnos.map((pgno) => {
      const data = new Uint8Array(file.buffer, file.byteOffset + at, pageSize);
      at += pageSize;
      return { pgno, data };
    }),
  }));
}
