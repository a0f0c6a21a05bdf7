/**
 * The WAL parser against WAL files written by real SQLite: better-sqlite3 in
 * another process and the sqlite3 CLI. The oracle is SQLite's own recovery:
 * a copy of the database and WAL opened by SQLite must show exactly the image
 * we build by overlaying the committed frames we parsed onto the database
 * file. Also: a flipped byte (both stop at the same commit), a restarted WAL
 * with stale frames behind new salts, and a big-endian re-encoding that
 * SQLite reads identically.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  type WalCommit,
  WAL_FRAME_HEADER_BYTES,
  WAL_HEADER_BYTES,
  encodeWalFrame,
  encodeWalHeader,
  initialWalState,
  parseWalHeader,
  scanWalFrames,
} from '@walwire/protocol';
import { diffImages, makeTempDir, recoverImage, spawnFixture, sqlite3Cli, useHarness } from './harness/index.js';

useHarness();

const TXNS = [
  'CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB)',
  ...Array.from({ length: 20 }, (_, i) => `INSERT INTO t(v) VALUES ('row ${i}')`),
  "BEGIN; UPDATE t SET v = v || '!' WHERE id % 3 = 0; INSERT INTO t(v, b) VALUES ('big', randomblob(20000)); COMMIT",
  'DELETE FROM t WHERE id < 5',
  'CREATE INDEX t_v ON t(v)',
  "BEGIN; CREATE TABLE u(x); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500) INSERT INTO u SELECT i FROM n; DROP INDEX t_v; COMMIT",
];

async function makeWal(statements: readonly string[]): Promise<string> {
  const dir = makeTempDir();
  const db = join(dir, 'app.db');
  const child = spawnFixture('wal-maker', [JSON.stringify({ db, statements, then: 'crash' })]);
  await child.waitForLine(/^done$/);
  const status = await child.exited;
  expect(status.signal).toBe('SIGKILL');
  return db;
}

/** Our view: the database file with every parsed commit's frames laid over it. */
function overlay(dbBytes: Uint8Array, commits: readonly WalCommit[], pageSize: number): Buffer {
  let image = Buffer.from(dbBytes);
  for (const commit of commits) {
    const size = commit.commitSize * pageSize;
    if (image.length < size) image = Buffer.concat([image, Buffer.alloc(size - image.length)]);
    for (const f of commit.frames) image.set(f.page, (f.pgno - 1) * pageSize);
    image = image.subarray(0, size);
  }
  return image;
}

/** SQLite's view: its recovery of the database file plus the given WAL bytes. */
async function sqliteView(dbPath: string, wal: Uint8Array): Promise<Buffer> {
  return recoverImage({ db: readFileSync(dbPath), wal });
}

function scanAll(wal: Uint8Array) {
  return scanWalFrames(wal, 0, initialWalState(parseWalHeader(wal)));
}

async function expectSameAsSqlite(dbPath: string, wal: Uint8Array, commits: readonly WalCommit[]): Promise<void> {
  const pageSize = parseWalHeader(wal).pageSize;
  const ours = overlay(readFileSync(dbPath), commits, pageSize);
  const theirs = await sqliteView(dbPath, wal);
  const diff = diffImages(ours, theirs);
  expect(diff.sizes[0]).toBe(diff.sizes[1]);
  expect(diff.pages).toEqual([]);
}

describe('WAL parser on files written by SQLite', () => {
  it('better-sqlite3: one commit per transaction, image identical to SQLite recovery', async () => {
    const db = await makeWal(TXNS);
    const wal = readFileSync(`${db}-wal`);
    const header = parseWalHeader(wal);
    expect(header.bigEndian).toBe(false); // x86: SQLite writes native (little-endian) checksums
    expect(header.pageSize).toBe(4096);
    const result = scanAll(wal);
    expect(result.stop).toBe('end');
    expect(result.pendingFrames).toBe(0);
    expect(result.commits).toHaveLength(TXNS.length);
    expect(result.state.offset).toBe(wal.length);
    await expectSameAsSqlite(db, wal, result.commits);
  });

  it('a flipped byte stops the scan at that frame, exactly where SQLite stops', async () => {
    const db = await makeWal(TXNS);
    const wal = readFileSync(`${db}-wal`);
    const { commits } = scanAll(wal);
    const pageSize = parseWalHeader(wal).pageSize;
    const target = commits[10]!.frames[0]!; // first frame of the 11th commit
    for (const at of [target.offset + 3, target.offset + WAL_FRAME_HEADER_BYTES + pageSize - 1]) {
      const bad = Buffer.from(wal);
      bad[at]! ^= 0x40;
      const result = scanAll(bad);
      expect(result.commits).toHaveLength(10);
      expect(result.stopOffset).toBe(target.offset);
      await expectSameAsSqlite(db, bad, result.commits);
    }
  });

  it('a restarted WAL: new frames behind new salts, stale frames after them are ignored', async () => {
    const db = await makeWal([
      ...TXNS,
      'PRAGMA wal_checkpoint(RESTART)',
      "INSERT INTO t(v) VALUES ('after restart')",
    ]);
    const wal = readFileSync(`${db}-wal`);
    const result = scanAll(wal);
    expect(result.commits).toHaveLength(1);
    expect(result.stop).toBe('salt-mismatch');
    expect(result.stopOffset).toBeLessThan(wal.length); // stale frames remain in the file
    await expectSameAsSqlite(db, wal, result.commits);
  });

  it('the sqlite3 CLI as the writer (another process holds the WAL open)', async () => {
    const dir = makeTempDir();
    const db = join(dir, 'cli.db');
    sqlite3Cli(db, 'PRAGMA journal_mode=WAL; CREATE TABLE k(id INTEGER PRIMARY KEY, v);');
    const holder = spawnFixture('wal-maker', [JSON.stringify({ db, statements: [], then: 'hold' })]);
    await holder.waitForLine(/^holding$/);
    sqlite3Cli(
      db,
      [
        'PRAGMA wal_autocheckpoint=0;',
        "INSERT INTO k(v) VALUES ('a');",
        "INSERT INTO k(v) VALUES (randomblob(9000));",
        'BEGIN; UPDATE k SET v = 1 WHERE id = 1; INSERT INTO k(v) SELECT value FROM generate_series(1, 300); COMMIT;',
        'DELETE FROM k WHERE id > 100;',
        'VACUUM;',
      ].join('\n'),
    );
    await holder.kill9();
    const wal = readFileSync(`${db}-wal`);
    const result = scanAll(wal);
    expect(result.commits.length).toBeGreaterThanOrEqual(5);
    expect(result.stop).toBe('end');
    await expectSameAsSqlite(db, wal, result.commits);
  });

  it('big-endian magic: our re-encoding parses the same and SQLite reads it identically', async () => {
    const db = await makeWal(TXNS);
    const wal = readFileSync(`${db}-wal`);
    const le = parseWalHeader(wal);
    const be = encodeWalHeader({ bigEndian: true, pageSize: le.pageSize, checkpointSeq: le.checkpointSeq, salt1: le.salt1, salt2: le.salt2 });
    const beHeader = parseWalHeader(be);
    expect(beHeader.magic).toBe(0x377f0683);
    let sum = [beHeader.checksum1, beHeader.checksum2] as const;
    const parts: Uint8Array[] = [be];
    for (const commit of scanAll(wal).commits) {
      for (const f of commit.frames) {
        const isCommit = f === commit.frames[commit.frames.length - 1];
        const encoded = encodeWalFrame(beHeader, sum, f.pgno, isCommit ? commit.commitSize : 0, f.page);
        sum = encoded.checksum;
        parts.push(encoded.frame);
      }
    }
    const beWal = Buffer.concat(parts);
    expect(beWal.length).toBe(wal.length);
    expect(beWal.subarray(WAL_HEADER_BYTES)).not.toEqual(wal.subarray(WAL_HEADER_BYTES)); // checksums differ by byte order
    const result = scanAll(beWal);
    expect(result.commits).toHaveLength(TXNS.length);
    await expectSameAsSqlite(db, beWal, result.commits);
    const leView = await sqliteView(db, wal);
    expect(diffImages(await sqliteView(db, beWal), leView).pages).toEqual([]);
  });
});
