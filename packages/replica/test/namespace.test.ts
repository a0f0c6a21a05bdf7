/**
 * ReplicaNamespace behaviour beyond the happy path: divergence (never build
 * on a diverged copy), idempotent re-sends, input validation, failed applies
 * rolled back, start-up verification, durable cursor, back-pressure.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { closeSync, copyFileSync, existsSync, fstatSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { type Txn, hasCode } from '@walwire/protocol';
import { Replica, type ReplicaNamespace, type SnapshotRequestEvent, keptDatabaseFd, readCursorSync } from '@walwire/replica';
import { type CapturedSource, captureSource, captureWal, diffImages, journalIsHot, makeTempDir, readReplicaImage, sqliteImageAt, useHarness } from '../../../test/harness/index.js';

useHarness();

const GEN = 'c'.repeat(32);
let source: CapturedSource;
const open: Replica[] = [];

// useHarness removes temp dirs after each test; the capture must outlive them.
const sourceDir = mkdtempSync(join(tmpdir(), 'walwire-ns-source-'));
beforeAll(async () => {
  const captured = await captureSource({ bank: { accounts: 100, txns: 60, padBytes: 40 } });
  for (const f of ['source.db', 'source.db-wal']) copyFileSync(join(captured.dir, f), join(sourceDir, f));
  source = captureWal(sourceDir);
}, 60_000);
afterAll(() => rmSync(sourceDir, { recursive: true, force: true }));

afterEach(async () => {
  for (const r of open.splice(0)) await r.close();
  delete process.env['WALWIRE_FAILPOINTS'];
});

async function openNs(
  dataDir = makeTempDir('walwire-ns-'),
  options: { maxQueuedBytes?: number; lockWaitWarnMs?: number; lockAttemptMs?: number; maxBatchTxns?: number; applyGapMs?: number } = {},
): Promise<ReplicaNamespace> {
  const replica = await Replica.open({ dataDir, ...options });
  open.push(replica);
  return replica.openNamespace('main');
}

async function expectAt(ns: ReplicaNamespace, seq: number): Promise<void> {
  expect(ns.position.appliedSeq).toBe(seq);
  const diff = diffImages(await sqliteImageAt(source, seq), readReplicaImage(ns.dbPath));
  expect(diff.pages).toEqual([]);
  expect(diff.sizes[1]).toBe(diff.sizes[0]);
}

const txns = (from: number, to: number): Txn[] => source.txns.slice(from - 1, to);

describe('divergence', () => {
  it('commits the seqs before a checksum mismatch, stops, latches across restarts and requests a snapshot', async () => {
    const dataDir = makeTempDir('walwire-ns-');
    const ns = await openNs(dataDir);
    await ns.apply(GEN, txns(1, 10));
    const events: SnapshotRequestEvent[] = [];
    ns.on('snapshot-request', (e) => events.push(e));
    const diverged: number[] = [];
    ns.on('diverged', (e) => diverged.push(e.seq));
    const bad = txns(11, 20).map((t) => (t.seq === 15 ? { ...t, checksum: '0000000000000001' } : t));
    const err = await ns.apply(GEN, bad).catch((e: unknown) => e);
    expect(hasCode(err, 'WALWIRE_ERR_DIVERGED')).toBe(true);
    expect(diverged).toEqual([15]);
    expect(events).toHaveLength(1);
    expect(events[0]!.reason).toMatch(/seq 15/);
    expect(ns.state).toBe('diverged');
    await expectAt(ns, 14);
    expect(ns.status.diverged).toMatchObject({ seq: 15, expected: '0000000000000001', actual: source.txns[14]!.checksum });
    // Never builds on it.
    await expect(ns.apply(GEN, txns(15, 16))).rejects.toThrow(/diverged/);
    await expectAt(ns, 14);
    // Latched on disk: a restart opens diverged and asks again.
    await open.pop()!.close();
    const again = await openNs(dataDir);
    expect(again.state).toBe('diverged');
    const requested = await new Promise<SnapshotRequestEvent>((resolve) => again.once('snapshot-request', resolve));
    expect(requested.ns).toBe('main');
    expect(readCursorSync(join(again.dir, 'cursor.json')).diverged?.seq).toBe(15);
  });

  it('detects a corrupted page image (checksum right, content wrong) before writing anything', async () => {
    const ns = await openNs();
    await ns.apply(GEN, txns(1, 5));
    const t6 = source.txns[5]!;
    const page = t6.pages[t6.pages.length - 1]!;
    const flipped = Uint8Array.from(page.data);
    flipped[100] = flipped[100]! ^ 0x01;
    const bad: Txn = { ...t6, pages: [...t6.pages.slice(0, -1), { pgno: page.pgno, data: flipped }] };
    await expect(ns.apply(GEN, [bad])).rejects.toMatchObject({ code: 'WALWIRE_ERR_DIVERGED' });
    await expectAt(ns, 5);
  });

  it('finds a database changed behind its back at start-up verification', async () => {
    const dataDir = makeTempDir('walwire-ns-');
    const ns = await openNs(dataDir);
    await ns.apply(GEN, txns(1, 8));
    const dbPath = ns.dbPath;
    await open.pop()!.close();
    // Another process would do this; the namespace is closed, so no lock is held here.
    const fd = openSync(dbPath, 'r+');
    writeSync(fd, Buffer.from([0x55]), 0, 1, 2 * source.pageSize - 10);
    closeSync(fd);
    const reopened = await openNs(dataDir);
    expect(reopened.state).toBe('diverged');
    expect(reopened.status.startup.decision).toBe('diverged');
    await expect(reopened.apply(GEN, txns(9, 9))).rejects.toMatchObject({ code: 'WALWIRE_ERR_DIVERGED' });
  });
});

describe('idempotency and validation', () => {
  it('skips seqs already applied, so re-sending after a reconnect is harmless', async () => {
    const ns = await openNs();
    await ns.apply(GEN, txns(1, 10));
    const batches = ns.status.batches;
    const pos = await ns.apply(GEN, txns(3, 10));
    expect(pos.appliedSeq).toBe(10);
    expect(ns.status.batches).toBe(batches);
    await ns.apply(GEN, txns(5, 14));
    await expectAt(ns, 14);
    expect(ns.status.txnsApplied).toBe(14);
  });

  it('rejects another generation, bad generations, unordered seqs and malformed pages', async () => {
    const ns = await openNs();
    const withoutPage1: Txn = { seq: 1, commitSize: 2, checksum: source.txns[0]!.checksum, commitTime: 0, pages: [{ pgno: 2, data: new Uint8Array(source.pageSize) }] };
    await expect(ns.apply(GEN, [withoutPage1])).rejects.toThrow(/must contain page 1/);
    expect(readReplicaImage(ns.dbPath).length).toBe(0);
    expect(existsSync(`${ns.dbPath}-journal`)).toBe(false);
    await ns.apply(GEN, txns(1, 3));
    await expect(ns.apply('d'.repeat(32), txns(4, 4))).rejects.toMatchObject({ code: 'WALWIRE_ERR_SNAPSHOT_REQUIRED' });
    await expect(ns.apply('nothex', txns(4, 4))).rejects.toMatchObject({ code: 'WALWIRE_ERR_INVALID_TXN' });
    await expect(ns.apply(GEN, [source.txns[4]!, source.txns[3]!])).rejects.toThrow(/strictly increasing/);
    const t4 = source.txns[3]!;
    await expect(ns.apply(GEN, [{ ...t4, pages: [{ pgno: t4.commitSize + 1, data: t4.pages[0]!.data }] }])).rejects.toThrow(/outside commit size/);
    await expect(ns.apply(GEN, [{ ...t4, pages: [{ pgno: 2, data: new Uint8Array(512) }] }])).rejects.toMatchObject({ code: 'WALWIRE_ERR_INVALID_TXN' });
    expect(ns.state).toBe('ready');
    await ns.apply(GEN, txns(4, 6));
    await expectAt(ns, 6);
  });
});

describe('failures and recovery', () => {
  it('rolls back a batch that fails mid-pages, stops, and resumes after reopening', async () => {
    const dataDir = makeTempDir('walwire-ns-');
    process.env['WALWIRE_FAILPOINTS'] = 'replica.apply.mid-pages=throw@2';
    const ns = await openNs(dataDir); // the worker copies the environment now
    delete process.env['WALWIRE_FAILPOINTS'];
    await ns.apply(GEN, txns(1, 1)); // mid-pages hit 1
    const before = readReplicaImage(ns.dbPath);
    const failed: string[] = [];
    ns.on('failed', (e) => failed.push(e.error.message));
    await expect(ns.apply(GEN, txns(2, 30))).rejects.toMatchObject({ code: 'WALWIRE_ERR_APPLY_FAILED' });
    expect(failed).toHaveLength(1);
    expect(ns.state).toBe('failed');
    expect(readReplicaImage(ns.dbPath).equals(before)).toBe(true);
    expect(journalIsHot(ns.dbPath)).toBe(false);
    await expect(ns.apply(GEN, txns(2, 2))).rejects.toMatchObject({ code: 'WALWIRE_ERR_APPLY_FAILED' });
    await open.pop()!.close();
    const reopened = await openNs(dataDir);
    expect(reopened.position.appliedSeq).toBe(1);
    await reopened.apply(GEN, txns(2, 30));
    await expectAt(reopened, 30);
  });

  it('records the durable seq below a held blob event and advances it on release', async () => {
    const dataDir = makeTempDir('walwire-ns-');
    const ns = await openNs(dataDir);
    await ns.apply(GEN, txns(1, 5));
    expect(ns.position.durableSeq).toBe(5);
    ns.durability.hold(8);
    await ns.apply(GEN, txns(6, 12));
    expect(ns.position).toMatchObject({ appliedSeq: 12, durableSeq: 7 });
    ns.durability.release(8);
    const durable: number[] = [];
    ns.on('durable', (e) => durable.push(e.durableSeq));
    expect((await ns.syncDurable()).durableSeq).toBe(12);
    expect(durable).toEqual([12]);
    await open.pop()!.close();
    const reopened = await openNs(dataDir);
    expect(reopened.position).toMatchObject({ appliedSeq: 12, durableSeq: 12, generation: GEN, checksum: source.txns[11]!.checksum });
    expect(reopened.helloPosition).toEqual({ ns: 'main', generation: GEN, appliedSeq: 12, durableSeq: 12, checksum: source.txns[11]!.checksum });
  });

  it('the database descriptor opened for a fresh namespace outlives its apply worker (regression: EBADF after remove and add, locks dropped)', async () => {
    const dataDir = makeTempDir('walwire-ns-');
    const replica = await Replica.open({ dataDir });
    open.push(replica);
    const ns = await replica.openNamespace('main');
    await ns.apply(GEN, txns(1, 3)); // creates the database file: the worker asks for the kept descriptor
    await replica.removeNamespace('main'); // the worker exits
    const fd = keptDatabaseFd(ns.dbPath);
    expect(fstatSync(fd).ino).toBe(statSync(ns.dbPath).ino);
    const again = await replica.openNamespace('main');
    await again.apply(GEN, txns(4, 8));
    await expectAt(again, 8);
  });

  it('a hold released while a batch runs is written once the batch ends (regression: durable seq stuck one below applied)', async () => {
    const ns = await openNs(makeTempDir('walwire-ns-'));
    await ns.apply(GEN, txns(1, 5));
    ns.durability.hold(6);
    const applying = ns.apply(GEN, txns(6, 9)); // dispatched with the cap 5
    ns.durability.release(6); // nothing else moves the cursor afterwards
    await applying;
    expect(ns.position.appliedSeq).toBe(9);
    for (let i = 0; i < 100 && ns.position.durableSeq < 9; i++) await new Promise((r) => setTimeout(r, 10));
    expect(ns.position.durableSeq).toBe(9);
  });

  it.each([0, 2])('close() between two batches resolves (regression: it waited forever for idle when it landed in the pause, applyGapMs %i)', async (applyGapMs) => {
    const ns = await openNs(undefined, { maxBatchTxns: 1, applyGapMs });
    const all = source.txns.slice(0, 10).map((t) => ns.apply(GEN, [t]).catch(() => undefined));
    const closed = new Promise<string>((resolve) => {
      // Right after the first batch: the next one is only scheduled.
      ns.once('applied', () => process.nextTick(() => void ns.close().then(() => resolve('closed'))));
    });
    const timeout = new Promise<string>((resolve) => setTimeout(() => resolve('hung'), 5000).unref());
    expect(await Promise.race([closed, timeout])).toBe('closed');
    await Promise.all(all);
  });

  it('back-pressures apply calls beyond maxQueuedBytes and still applies all of them in order', async () => {
    const ns = await openNs(undefined, { maxQueuedBytes: 3 * source.pageSize });
    const all = source.txns.map((t) => ns.apply(GEN, [t]));
    let maxQueued = 0;
    ns.on('applied', () => (maxQueued = Math.max(maxQueued, ns.status.queuedBytes)));
    await Promise.all(all);
    await ns.whenIdle();
    await expectAt(ns, source.txns.length);
    expect(ns.status.queuedBytes).toBe(0);
  });

  it('is readable by a read-only reader with a busy timeout, and reports journal_mode delete', async () => {
    const ns = await openNs();
    await ns.apply(GEN, source.txns);
    const reader = new Database(ns.dbPath, { readonly: true, timeout: 5000 });
    const row = reader.prepare('SELECT sum(balance) AS s, count(*) AS n FROM bank').get() as { s: number; n: number };
    expect(row).toEqual({ s: 100 * 1000, n: 100 });
    expect(reader.pragma('journal_mode', { simple: true })).toBe('delete');
    reader.close();
    expect(readFileSync(ns.dbPath)[18]).toBe(1);
  });

  it('reports a reader holding its lock and gives up the wait when closed', async () => {
    const ns = await openNs(undefined, { lockWaitWarnMs: 100, lockAttemptMs: 50 });
    await ns.apply(GEN, txns(1, 5));
    const reader = new Database(ns.dbPath, { readonly: true, timeout: 5000 });
    reader.exec('BEGIN');
    reader.prepare('SELECT count(*) FROM bank').get();
    const delayed: number[] = [];
    ns.on('apply-delayed', (e) => delayed.push(e.waitedMs));
    const pending = ns.apply(GEN, txns(6, 8)).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 400));
    expect(delayed.length).toBeGreaterThan(0);
    expect(ns.status.lockWaitMs).toBeGreaterThanOrEqual(100);
    expect(ns.position.appliedSeq).toBe(5);
    await open.pop()!.close();
    expect(hasCode(await pending, 'WALWIRE_ERR_CLOSED')).toBe(true);
    reader.exec('COMMIT');
    reader.close();
    await expectAtPath(ns.dbPath, 5);
  });
});

describe('snapshot install', () => {
  async function stagedImage(seq: number): Promise<{ image: Buffer; spec: { generation: string; seq: number; checksum: string; pageSize: number; pageCount: number; imagePath: string } }> {
    const image = await sqliteImageAt(source, seq);
    const pageSize = image.readUInt16BE(16) === 1 ? 65536 : image.readUInt16BE(16);
    const imagePath = join(makeTempDir('walwire-img-'), 'image');
    writeFileSync(imagePath, image);
    return { image, spec: { generation: GEN, seq, checksum: source.txns[seq - 1]!.checksum, pageSize, pageCount: image.length / pageSize, imagePath } };
  }

  it('a fresh namespace has no database file until its first snapshot is linked in as the database', async () => {
    const ns = await openNs();
    expect(existsSync(ns.dbPath)).toBe(false);
    const { spec } = await stagedImage(40);
    const position = await ns.installSnapshot(spec);
    expect(position).toMatchObject({ generation: GEN, appliedSeq: 40 });
    // The image file became the database: its own name is gone.
    expect(existsSync(spec.imagePath)).toBe(false);
    await expectAt(ns, 40);
    expect(readFileSync(ns.dbPath)[18]).toBe(1);
    await ns.apply(GEN, txns(41, 60));
    await expectAt(ns, 60);
  });

  it('installs through the journal when another process created the database file meanwhile (a reader may hold it open)', async () => {
    const ns = await openNs();
    // A read-write opener creates the empty file, and keeps it open.
    const reader = new Database(ns.dbPath, { timeout: 5000 });
    const inode = statSync(ns.dbPath).ino;
    const { spec } = await stagedImage(40);
    await ns.installSnapshot(spec);
    expect(existsSync(spec.imagePath)).toBe(true);
    expect(statSync(ns.dbPath).ino).toBe(inode);
    await expectAt(ns, 40);
    const row = reader.prepare('SELECT sum(balance) AS s, count(*) AS n FROM bank').get() as { s: number; n: number };
    expect(row).toEqual({ s: 100 * 1000, n: 100 });
    reader.close();
  });
});

describe('Replica', () => {
  it('opens namespaces once, lists HELLO positions, forwards events and rejects bad names', async () => {
    const replica = await Replica.open({ dataDir: makeTempDir('walwire-replica-') });
    open.push(replica);
    await expect(replica.openNamespace('Bad Name')).rejects.toMatchObject({ code: 'WALWIRE_ERR_INVALID_NAMESPACE' });
    await expect(replica.namespace('main')).rejects.toMatchObject({ code: 'WALWIRE_ERR_UNKNOWN_NAMESPACE' });
    const [a, b] = await Promise.all([replica.openNamespace('main'), replica.openNamespace('main')]);
    expect(a).toBe(b);
    const other = await replica.openNamespace('other');
    expect(await replica.positions()).toEqual([
      { ns: 'main', generation: null, appliedSeq: 0, durableSeq: 0, checksum: null },
      { ns: 'other', generation: null, appliedSeq: 0, durableSeq: 0, checksum: null },
    ]);
    const applied: string[] = [];
    replica.on('applied', (e) => applied.push(`${e.ns}:${e.appliedSeq}`));
    await a.apply(GEN, txns(1, 3));
    await other.apply(GEN, txns(1, 2));
    expect(applied).toEqual(['main:3', 'other:2']);
    expect(replica.namespaceNames).toEqual(['main', 'other']);
    expect((await replica.positions()).map((p) => p.appliedSeq)).toEqual([3, 2]);
  });
});

async function expectAtPath(dbPath: string, seq: number): Promise<void> {
  const diff = diffImages(await sqliteImageAt(source, seq), readReplicaImage(dbPath));
  expect(diff.pages).toEqual([]);
  expect(diff.sizes[1]).toBe(diff.sizes[0]);
}
