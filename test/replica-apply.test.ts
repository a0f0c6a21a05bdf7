/**
 * The replica applier against SQLite itself: transactions captured from a
 * real writer process's WAL (inserts, updates, deletes, overflow pages,
 * growth, schema changes, VACUUM shrink) are applied one seq at a time and
 * in batches; after each apply the replica must be page-exact with SQLite's
 * own image of the source at that seq, pass integrity_check, and carry the
 * primary's checksum.
 */
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { statSync } from 'node:fs';
import Database from 'better-sqlite3';
import { Replica } from '@walwire/replica';
import {
  type CapturedSource,
  captureSource,
  diffImages,
  integrityCheck,
  makeTempDir,
  readReplicaImage,
  sqliteImageAt,
  useHarness,
} from './harness/index.js';

useHarness();

const GEN = 'a'.repeat(32);

const SCENARIO: readonly string[] = [
  'CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, body BLOB)',
  "INSERT INTO t(name, body) VALUES ('first', zeroblob(10))",
  // growth: many rows in one transaction
  "BEGIN; WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000) INSERT INTO t(name, body) SELECT 'row' || x, randomblob(200) FROM c; COMMIT",
  // overflow pages: rows far larger than a page
  "INSERT INTO t(name, body) VALUES ('big1', randomblob(50000)), ('big2', randomblob(120000))",
  "UPDATE t SET name = name || '-updated' WHERE id % 7 = 0",
  // schema changes
  'CREATE INDEX t_name ON t(name)',
  'ALTER TABLE t ADD COLUMN extra INTEGER DEFAULT 42',
  'CREATE TABLE other(k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID',
  "INSERT INTO other VALUES ('a', 'x'), ('b', 'y')",
  // deletes leave free pages, then VACUUM shrinks the file
  'DELETE FROM t WHERE id > 300',
  "DELETE FROM t WHERE name LIKE 'big%'",
  'VACUUM',
  "UPDATE t SET body = randomblob(3000) WHERE id < 50",
  'DROP INDEX t_name',
  'VACUUM',
  // growth again after the shrink
  "BEGIN; WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 500) INSERT INTO t(name, body) SELECT 'again' || x, randomblob(500) FROM c; COMMIT",
];

async function expectExact(source: CapturedSource, replicaDb: string, seq: number): Promise<void> {
  const want = await sqliteImageAt(source, seq);
  const got = readReplicaImage(replicaDb);
  const diff = diffImages(want, got);
  expect(diff.sizes[1], `size at seq ${seq}`).toBe(diff.sizes[0]);
  expect(diff.pages, `differing pages at seq ${seq}`).toEqual([]);
  expect(integrityCheck(replicaDb)).toBe('ok');
}

describe('replica apply, page-exact against SQLite', () => {
  it('applies every seq of a DDL / overflow / VACUUM / growth scenario one at a time', async () => {
    const source = await captureSource({ statements: SCENARIO });
    // one seq per statement, plus seq 1 for the base file when it had pages before the first WAL frame
    const offset = source.txns.length - SCENARIO.length;
    expect([0, 1]).toContain(offset);
    const sizes = source.txns.map((t) => t.commitSize);
    // the scenario really grows and really shrinks
    expect(Math.max(...sizes)).toBeGreaterThan(sizes[1]! * 10);
    const vacuumSeq = SCENARIO.indexOf('VACUUM') + 1 + offset;
    expect(sizes[vacuumSeq - 1]!).toBeLessThan(sizes[vacuumSeq - 2]!);

    const replica = await Replica.open({ dataDir: makeTempDir('walwire-replica-'), maxBatchTxns: 1 });
    const ns = await replica.openNamespace('main');
    for (const txn of source.txns) {
      const pos = await ns.apply(GEN, [txn]);
      expect(pos.appliedSeq).toBe(txn.seq);
      expect(pos.checksum).toBe(txn.checksum);
      await expectExact(source, ns.dbPath, txn.seq);
      expect(statSync(ns.dbPath).size).toBe(txn.commitSize * source.pageSize);
    }
    // a reader sees the final content through SQLite
    const reader = new Database(ns.dbPath, { readonly: true, timeout: 5000 });
    expect((reader.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n).toBe(800);
    expect((reader.prepare('SELECT extra FROM t LIMIT 1').get() as { extra: number }).extra).toBe(42);
    expect(reader.pragma('journal_mode', { simple: true })).toBe('delete');
    reader.close();
    expect(ns.status.batches).toBe(source.txns.length);
    await replica.close();
  });

  it('applies the same scenario in batches (one journal per batch) and in one batch', async () => {
    const source = await captureSource({ statements: SCENARIO, pageSize: 1024 });
    for (const batchSize of [3, 1000]) {
      const replica = await Replica.open({ dataDir: makeTempDir('walwire-replica-') });
      const ns = await replica.openNamespace('main');
      for (let i = 0; i < source.txns.length; i += batchSize) {
        const batch = source.txns.slice(i, i + batchSize);
        const pos = await ns.apply(GEN, batch);
        const last = batch[batch.length - 1]!;
        expect(pos.appliedSeq).toBe(last.seq);
        await expectExact(source, ns.dbPath, last.seq);
      }
      expect(ns.status.batches).toBe(Math.ceil(source.txns.length / batchSize));
      await replica.close();
    }
  });

  it('handles the smallest and largest page sizes (512 and 65536 bytes)', async () => {
    for (const pageSize of [512, 65536]) {
      const source = await captureSource({ statements: SCENARIO.slice(0, 12), pageSize });
      expect(source.pageSize).toBe(pageSize);
      const replica = await Replica.open({ dataDir: makeTempDir('walwire-replica-') });
      const ns = await replica.openNamespace('main');
      for (let i = 0; i < source.txns.length; i += 4) {
        const batch = source.txns.slice(i, i + 4);
        await ns.apply(GEN, batch);
        await expectExact(source, ns.dbPath, batch[batch.length - 1]!.seq);
      }
      await replica.close();
    }
  });

  it('coalesces concurrent apply calls into batches', async () => {
    const source = await captureSource({ bank: { accounts: 20, txns: 200 } });
    const replica = await Replica.open({ dataDir: makeTempDir('walwire-replica-'), maxBatchTxns: 64 });
    const ns = await replica.openNamespace('main');
    const results = await Promise.all(source.txns.map((t) => ns.apply(GEN, [t])));
    expect(results[results.length - 1]!.appliedSeq).toBe(source.txns.length);
    expect(ns.status.batches).toBeLessThan(source.txns.length / 4);
    await expectExact(source, ns.dbPath, source.txns.length);
    await replica.close();
  });
});
