/**
 * The rollback-journal encoder against real SQLite. We hand-build a hot
 * journal holding the original pages, overwrite the database the way the
 * replica applier does (overwrite, grow, shrink), then let a real SQLite
 * opener in another process (the sqlite3 CLI, or better-sqlite3) find the hot
 * journal: it must restore the original file byte for byte.
 *
 * A wrong record checksum is the dangerous case: SQLite silently stops
 * playback there and deletes the journal, leaving a corrupt database. The
 * last test shows SQLite doing exactly that, and that our verifier
 * (decodeJournal, run by encodeJournal before any journal is returned)
 * rejects such a journal first.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type JournalRecord, JournalFormatError, decodeJournal, encodeJournal, patchReplicaPage1 } from '@walwire/protocol';
import { integrityCheck, makeRollbackDb, makeTempDir, pageOf, spawnFixture, sqlite3Cli, useHarness } from './harness/index.js';

useHarness();

/** Writes the journal, then the modified image, as the applier does (journal first). */
function crashMidApply(db: string, journal: Uint8Array, modified: Uint8Array): void {
  writeFileSync(`${db}-journal`, journal);
  writeFileSync(db, modified);
}

async function openWithBetterSqlite(db: string): Promise<void> {
  await spawnFixture('writer', [JSON.stringify({ db, wal: false, mode: 'script', statements: ['SELECT count(*) FROM a'] })]).succeeded();
}

describe('hand-built hot journal, rolled back by SQLite in another process', () => {
  it('overwrite + grow: the CLI restores the original file byte for byte', () => {
    const { db, original, pageSize, pages } = makeRollbackDb();
    const written = [1, 3, Math.floor(pages / 2), pages];
    const records: JournalRecord[] = written.map((pgno) => ({ pgno, data: Uint8Array.from(pageOf(original, pgno, pageSize)) }));
    const journal = encodeJournal({ pageSize, originalPageCount: pages, nonce: 0x1234abcd, records });
    const modified = Buffer.concat([original, randomBytes(4 * pageSize)]);
    for (const pgno of written.slice(1)) modified.set(randomBytes(pageSize), (pgno - 1) * pageSize);
    modified.set(patchReplicaPage1(pageOf(original, 1, pageSize), 4242), 0);
    crashMidApply(db, journal, modified);

    expect(sqlite3Cli(db, 'PRAGMA integrity_check;').trim()).toBe('ok');
    expect(existsSync(`${db}-journal`)).toBe(false);
    expect(readFileSync(db).equals(original)).toBe(true);
  });

  it('shrink: better-sqlite3 restores the cut-off pages and the original size', async () => {
    const { db, original, pageSize, pages } = makeRollbackDb();
    const keep = Math.floor(pages / 3);
    const records: JournalRecord[] = [1, ...Array.from({ length: pages - keep }, (_, i) => keep + 1 + i)].map((pgno) => ({
      pgno,
      data: Uint8Array.from(pageOf(original, pgno, pageSize)),
    }));
    const journal = encodeJournal({ pageSize, originalPageCount: pages, nonce: 99, records });
    const modified = Buffer.from(original.subarray(0, keep * pageSize));
    modified.set(patchReplicaPage1(pageOf(original, 1, pageSize), 7), 0);
    crashMidApply(db, journal, modified);

    await openWithBetterSqlite(db);
    expect(existsSync(`${db}-journal`)).toBe(false);
    expect(readFileSync(db).equals(original)).toBe(true);
    expect(integrityCheck(db)).toBe('ok');
  });

  it('a journal written before any page (crash right after the journal fsync) changes nothing', () => {
    const { db, original, pageSize, pages } = makeRollbackDb();
    const journal = encodeJournal({ pageSize, originalPageCount: pages, nonce: 5, records: [{ pgno: 1, data: Uint8Array.from(pageOf(original, 1, pageSize)) }] });
    writeFileSync(`${db}-journal`, journal);
    expect(sqlite3Cli(db, 'SELECT count(*) FROM a;').trim()).toBe('60');
    expect(readFileSync(db).equals(original)).toBe(true);
  });
});

describe('a wrong record checksum', () => {
  it('is silently half-applied by SQLite, and rejected by our verifier before any write', () => {
    const { db, original, pageSize, pages } = makeRollbackDb();
    const target = 3;
    const records: JournalRecord[] = [1, target, 5].map((pgno) => ({ pgno, data: Uint8Array.from(pageOf(original, pgno, pageSize)) }));
    const good = encodeJournal({ pageSize, originalPageCount: pages, nonce: 77, records });
    const bad = Uint8Array.from(good);
    const checksumAt = 4096 + 2 * (pageSize + 8) - 4; // record 1 (page 3) checksum
    bad[checksumAt + 3]! ^= 1;

    expect(() => decodeJournal(bad)).toThrow(JournalFormatError);
    expect(() => decodeJournal(bad)).toThrow(/record 1 \(page 3\) checksum/);

    // What SQLite does with it: playback stops at record 1 without an error.
    const modified = Buffer.from(original);
    for (const pgno of [target, 5]) modified.set(randomBytes(pageSize), (pgno - 1) * pageSize);
    crashMidApply(db, bad, modified);
    sqlite3Cli(db, 'SELECT count(*) FROM sqlite_schema;');
    expect(existsSync(`${db}-journal`)).toBe(false);
    const after = readFileSync(db);
    expect(Buffer.compare(pageOf(after, target, pageSize), pageOf(original, target, pageSize))).not.toBe(0);
    expect(Buffer.compare(pageOf(after, 5, pageSize), pageOf(original, 5, pageSize))).not.toBe(0);
  });

  it('a truncated journal (torn journal write) is refused by the verifier', () => {
    const { original, pageSize, pages } = makeRollbackDb();
    const good = encodeJournal({ pageSize, originalPageCount: pages, nonce: 1, records: [{ pgno: 1, data: Uint8Array.from(pageOf(original, 1, pageSize)) }] });
    const dir = makeTempDir();
    writeFileSync(join(dir, 'j'), good);
    truncateSync(join(dir, 'j'), good.length - 100);
    expect(() => decodeJournal(readFileSync(join(dir, 'j')))).toThrow(/journal is \d+ bytes/);
  });
});
