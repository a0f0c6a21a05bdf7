/**
 * The kept journal file (journal-file.ts) against real SQLite in other
 * processes (the sqlite3 CLI, better-sqlite3): idle with a zero header it is
 * no one's hot journal; armed it is, and SQLite restores the original
 * database from it byte for byte; and stale bytes a larger earlier batch
 * left behind its records are never played back.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, existsSync, openSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { type JournalRecord, JOURNAL_MAGIC, encodeJournal, journalRecordChecksum, patchReplicaPage1 } from '@walwire/protocol';
import { JournalFile } from '../src/journal-file.js';
import { journalIsHot, makeRollbackDb, pageOf, sqlite3Cli, useHarness } from '../../../test/harness/index.js';

useHarness();

const SECTOR = 4096;

/** reopen() with a descriptor of the database (no SQLite connection of this process holds a lock when it is closed). */
function reopen(journal: JournalFile, db: string): void {
  const fd = openSync(db, 'r');
  try {
    journal.reopen(fd);
  } finally {
    closeSync(fd);
  }
}

function journalOf(db: string): JournalFile {
  const journal = new JournalFile({ path: `${db}-journal`, dir: dirname(db) });
  reopen(journal, db);
  return journal;
}

/** The journal of a batch that rewrites `written` pages, and the database as a crash mid-pages leaves it. */
function batch(original: Buffer, pageSize: number, pages: number, written: number[]): { journal: Uint8Array; torn: Buffer } {
  const records: JournalRecord[] = written.map((pgno) => ({ pgno, data: Uint8Array.from(pageOf(original, pgno, pageSize)) }));
  const journal = encodeJournal({ pageSize, originalPageCount: pages, nonce: randomBytes(4).readUInt32BE(0), records });
  const torn = Buffer.from(original);
  for (const pgno of written.slice(1)) torn.set(randomBytes(pageSize), (pgno - 1) * pageSize);
  torn.set(patchReplicaPage1(pageOf(original, 1, pageSize), 777), 0);
  return { journal, torn };
}

function readOnlyCount(db: string): number {
  const conn = new Database(db, { readonly: true, fileMustExist: true });
  try {
    return (conn.prepare('SELECT count(*) AS n FROM a').get() as { n: number }).n;
  } finally {
    conn.close();
  }
}

function lastSectorIsZero(path: string): boolean {
  const bytes = readFileSync(path);
  return bytes.length % SECTOR === 0 && bytes.subarray(bytes.length - SECTOR).every((b) => b === 0);
}

describe('kept journal file', () => {
  it('with a zero header next to the database is no one\'s hot journal: readers read, a read-write opener leaves it alone', () => {
    const { db, original, pageSize, pages } = makeRollbackDb();
    const journal = journalOf(db);
    journal.writeBody(batch(original, pageSize, pages, [1, 2, 3]).journal.subarray(SECTOR));
    const kept = readFileSync(`${db}-journal`);
    expect(journalIsHot(db)).toBe(false);
    expect(readOnlyCount(db)).toBe(60);
    expect(sqlite3Cli(db, 'SELECT count(*) FROM a;').trim()).toBe('60');
    expect(readFileSync(`${db}-journal`).equals(kept)).toBe(true);
    expect(readFileSync(db).equals(original)).toBe(true);
    journal.forget();
  });

  it('armed, over a torn database: read-only readers refuse it, and the sqlite3 CLI restores the original byte for byte', () => {
    const { db, original, pageSize, pages } = makeRollbackDb();
    const journal = journalOf(db);
    const { journal: bytes, torn } = batch(original, pageSize, pages, [1, 2, Math.floor(pages / 2), pages]);
    journal.writeBody(bytes.subarray(SECTOR));
    journal.arm(bytes);
    journal.forget();
    writeFileSync(db, torn);
    expect(journalIsHot(db)).toBe(true);
    expect(() => readOnlyCount(db)).toThrow(expect.objectContaining({ code: 'SQLITE_READONLY_ROLLBACK' }));
    expect(sqlite3Cli(db, 'SELECT count(*) FROM a;').trim()).toBe('60');
    expect(readFileSync(db).equals(original)).toBe(true);
    expect(existsSync(`${db}-journal`)).toBe(false); // the CLI (journal_mode DELETE) deletes what it played back
  });

  it('disarmed after the pages are written: the new database stays (the commit point)', () => {
    const { db, original, pageSize, pages } = makeRollbackDb();
    const journal = journalOf(db);
    const { journal: bytes, torn } = batch(original, pageSize, pages, [1, 2]);
    const committed = Buffer.from(original);
    committed.set(torn.subarray(0, pageSize), 0); // page 1 with the new change counter only: still a valid database
    journal.writeBody(bytes.subarray(SECTOR));
    journal.arm(bytes);
    writeFileSync(db, committed);
    journal.disarm();
    journal.sync();
    journal.forget();
    expect(journalIsHot(db)).toBe(false);
    expect(sqlite3Cli(db, 'SELECT count(*) FROM a;').trim()).toBe('60');
    expect(readFileSync(db).equals(committed)).toBe(true);
  });

  it('never plays back a journal header that a larger earlier body left after the records (the stale bytes at the next sector boundary are zeroed)', () => {
    const { db, original, pageSize, pages } = makeRollbackDb();
    const journal = journalOf(db);
    const small = batch(original, pageSize, pages, [1, 3]);
    // An earlier, larger body whose bytes at the small body's next header
    // offset form a valid second journal header, followed by one record that
    // would write garbage into page 2 and truncate the database to 2 pages.
    const nextHeader = Math.ceil((SECTOR + small.journal.length - SECTOR) / SECTOR) * SECTOR;
    const large = new Uint8Array(nextHeader + 3 * SECTOR + pageSize);
    const at = nextHeader - SECTOR; // body offset of that file offset
    const view = new DataView(large.buffer);
    large.set(JOURNAL_MAGIC, at);
    view.setUint32(at + 8, 1);
    view.setUint32(at + 12, 0x5eed);
    view.setUint32(at + 16, 2);
    const garbage = randomBytes(pageSize);
    view.setUint32(at + SECTOR, 2);
    large.set(garbage, at + SECTOR + 4);
    view.setUint32(at + SECTOR + 4 + pageSize, journalRecordChecksum(0x5eed, garbage));
    journal.writeBody(large);
    journal.writeBody(small.journal.subarray(SECTOR));
    journal.arm(small.journal);
    journal.forget();
    writeFileSync(db, small.torn);
    expect(sqlite3Cli(db, 'SELECT count(*) FROM a;').trim()).toBe('60');
    expect(readFileSync(db).equals(original)).toBe(true);
  });

  it('keeps its last sector zero as it grows and after it is cut back, and its records start at the sector boundary', () => {
    const { db } = makeRollbackDb();
    const path = `${db}-journal`;
    const journal = journalOf(db);
    expect(lastSectorIsZero(path)).toBe(true);
    for (const n of [1, 60 * 1024, 64 * 1024, 300 * 1024, 5 * 1024 * 1024]) {
      const body = randomBytes(n);
      body.fill(0xff, body.length - 1); // ends in a non-zero byte
      journal.writeBody(body);
      const bytes = readFileSync(path);
      expect(bytes.subarray(SECTOR, SECTOR + n).equals(body), `body of ${n}`).toBe(true);
      expect(lastSectorIsZero(path), `last sector after a body of ${n}`).toBe(true);
      expect(bytes.subarray(0, SECTOR).every((b) => b === 0), `header after a body of ${n}`).toBe(true);
    }
    expect(statSync(path).size).toBeGreaterThan(5 * 1024 * 1024);
    journal.sync(); // past the size limit: cut back
    expect(statSync(path).size).toBeLessThan(1024 * 1024);
    expect(lastSectorIsZero(path)).toBe(true);
    journal.forget();
  });

  it('knows when its path no longer names its file, and a reopen adopts what is there with a zero header', () => {
    const { db } = makeRollbackDb();
    const path = `${db}-journal`;
    const journal = new JournalFile({ path, dir: dirname(db) });
    expect(journal.inPlace()).toBe(false);
    reopen(journal, db);
    expect(journal.inPlace()).toBe(true);
    unlinkSync(path);
    expect(journal.inPlace()).toBe(false);
    writeFileSync(path, randomBytes(10_000).fill(0xd9, 0, 1)); // someone else's file, not sector-aligned
    expect(journal.inPlace()).toBe(false);
    reopen(journal, db);
    expect(journal.inPlace()).toBe(true);
    expect(journalIsHot(db)).toBe(false);
    expect(lastSectorIsZero(path)).toBe(true);
    expect(() => journal.writeBody(new Uint8Array(10))).not.toThrow();
    journal.forget();
    expect(journal.inPlace()).toBe(false);
    expect(() => journal.arm(new Uint8Array(28))).toThrow(expect.objectContaining({ code: 'WALWIRE_ERR_APPLY_FAILED' }));
  });

  it('takes the database file\'s permissions whatever the umask, so readers that may open the database can open it (regression: a 0600 journal next to a 0644 database is hot to every other user)', () => {
    const { db } = makeRollbackDb();
    chmodSync(db, 0o640);
    const before = process.umask(0o077);
    try {
      const journal = journalOf(db);
      expect(statSync(`${db}-journal`).mode & 0o777).toBe(0o640);
      journal.forget();
      chmodSync(db, 0o644);
      chmodSync(`${db}-journal`, 0o600); // adopted as found: fixed on reopen
      reopen(journal, db);
      expect(statSync(`${db}-journal`).mode & 0o777).toBe(0o644);
      journal.forget();
    } finally {
      process.umask(before);
    }
  });
});
