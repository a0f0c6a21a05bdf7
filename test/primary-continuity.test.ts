/**
 * Invariant 6 across daemon restarts: continuity is proven from the WAL
 * (same salts, same frames at the logged offset) or the generation changes,
 * with the reason logged. Never a silent gap.
 */
import { describe, expect, it } from 'vitest';
import { closeSync, existsSync, openSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { parseDatabaseHeader } from '@walwire/protocol';
import {
  PrimaryDaemon,
  StepWriter,
  diffImages,
  imageChecksum,
  makeTempDir,
  readDatabaseSnapshot,
  readPrimaryLog,
  rebuildFromLog,
  sqlite3Cli,
  useHarness,
} from './harness/index.js';

useHarness();

interface Setup {
  readonly db: string;
  readonly dataDir: string;
  readonly writer: StepWriter;
  readonly daemon: PrimaryDaemon;
  readonly generation: string;
  readonly pageSize: number;
}

const LIMITS = { checkpointPages: 100000 } as const;

/** A database with a running daemon and a long-lived writer that has committed twice. */
async function setup(): Promise<Setup> {
  const dir = makeTempDir();
  const db = join(dir, 'app.db');
  const dataDir = join(dir, 'data');
  sqlite3Cli(db, 'PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);');
  const pageSize = parseDatabaseHeader(readDatabaseSnapshot(db)).pageSize;
  const daemon = await PrimaryDaemon.start({ dataDir, namespaces: { app: { path: db } }, ...LIMITS });
  const generation = daemon.generations('app')[0]!.generation;
  const writer = await StepWriter.start(db);
  for (let i = 0; i < 2; i++) {
    await writer.exec('INSERT INTO t(v) VALUES (randomblob(3000))');
    await daemon.waitForChecksum('app', imageChecksum(readDatabaseSnapshot(db), pageSize));
  }
  return { db, dataDir, writer, daemon, generation, pageSize };
}

async function restart(s: Setup): Promise<PrimaryDaemon> {
  return PrimaryDaemon.start({ dataDir: s.dataDir, namespaces: { app: { path: s.db } }, ...LIMITS });
}

/** After a restart into a new generation: its base is SQLite's current state, and new commits follow it page-exactly. */
async function expectNewGenerationFromCurrentState(s: Setup, daemon: PrimaryDaemon, reason: RegExp): Promise<void> {
  const current = readDatabaseSnapshot(s.db);
  const gens = daemon.generations('app');
  expect(gens.length).toBe(1);
  expect(gens[0]!.generation).not.toBe(s.generation);
  expect(gens[0]!.previous).toBe(s.generation);
  expect(gens[0]!.reason).toMatch(reason);
  expect(gens[0]!.checksum).toBe(imageChecksum(current, s.pageSize));
  // Logged with its reason (pino line on stderr).
  const logged = async (): Promise<boolean> => {
    for (let i = 0; i < 200; i++) {
      if (daemon.child.stderr.some((l) => l.includes('"msg":"new generation"') && l.includes(gens[0]!.generation))) return true;
      await new Promise((r) => setTimeout(r, 10));
    }
    return false;
  };
  expect(await logged()).toBe(true);
  const writer = await StepWriter.start(s.db);
  await writer.exec("INSERT INTO t(v) VALUES ('after restart')");
  const after = readDatabaseSnapshot(s.db);
  const rec = await daemon.waitForChecksum('app', imageChecksum(after, s.pageSize));
  expect(rec.seq).toBe(1);
  expect(rec.generation).toBe(gens[0]!.generation);
  await writer.close();
  await daemon.stop();
  const contents = await readPrimaryLog(s.dataDir, 'app');
  expect(contents.generation).toBe(gens[0]!.generation);
  expect(contents.reason).toMatch(reason);
  expect(diffImages(rebuildFromLog(current, contents), after).pages).toEqual([]);
}

describe('primary continuity across restarts', () => {
  it('wal_checkpoint(TRUNCATE) and more writes while stopped: new generation, logged, from the current state', async () => {
    const s = await setup();
    await s.daemon.stop();
    sqlite3Cli(s.db, ".timeout 10000\nPRAGMA wal_checkpoint(TRUNCATE);\nINSERT INTO t(v) VALUES ('while stopped');");
    await s.writer.exec("UPDATE t SET v = 'changed' WHERE id = 1");
    const daemon = await restart(s);
    await expectNewGenerationFromCurrentState(s, daemon, /salts changed/);
    await s.writer.close();
  });

  it('writes, then the last writer closes and SQLite deletes the WAL: new generation', async () => {
    const s = await setup();
    await s.daemon.stop();
    await s.writer.exec("INSERT INTO t(v) VALUES ('before close')");
    await s.writer.close();
    expect(existsSync(`${s.db}-wal`)).toBe(false);
    const daemon = await restart(s);
    await expectNewGenerationFromCurrentState(s, daemon, /WAL is missing or empty/);
  });

  it('the WAL deleted on close with no write while stopped: the generation continues', async () => {
    const s = await setup();
    const head = s.daemon.records('app').at(-1)!;
    await s.daemon.stop();
    await s.writer.close();
    expect(existsSync(`${s.db}-wal`)).toBe(false);
    const daemon = await restart(s);
    expect(daemon.generations('app')).toEqual([]);
    const writer = await StepWriter.start(s.db);
    await writer.exec("INSERT INTO t(v) VALUES ('next')");
    const rec = await daemon.waitForChecksum('app', imageChecksum(readDatabaseSnapshot(s.db), s.pageSize));
    expect(rec.generation).toBe(s.generation);
    expect(rec.seq).toBe(head.seq + 1);
    await writer.close();
    await daemon.stop();
  });

  it('a WAL corrupted while stopped fails the namespace with WALWIRE_ERR_WAL_FORMAT instead of capturing a wrong state', async () => {
    const s = await setup();
    await s.daemon.stop();
    const before = statSync(`${s.db}-wal`).size;
    for (let i = 0; i < 3; i++) await s.writer.exec('INSERT INTO t(v) VALUES (randomblob(5000))');
    // Copied into the database file too, so an image built from the frames
    // before the damage would mix old and new pages.
    await s.writer.exec('PRAGMA wal_checkpoint(PASSIVE)');
    expect(statSync(`${s.db}-wal`).size).toBeGreaterThan(before);
    // Flip a byte inside the first frame written while stopped (the -wal file carries no locks).
    const fd = openSync(`${s.db}-wal`, 'r+');
    writeSync(fd, Buffer.from([0xff]), 0, 1, before + 24 + 200);
    closeSync(fd);
    const daemon = PrimaryDaemon.spawn({ dataDir: s.dataDir, namespaces: { app: { path: s.db } }, ...LIMITS, walStallTimeoutMs: 300, namespaceRetryMs: 100 });
    await daemon.child.waitForLine(/^ready /);
    for (let i = 0; i < 300 && !daemon.lines<{ ns: string }>('nserror').some((e) => e.ns === 'app'); i++) await new Promise((r) => setTimeout(r, 10));
    expect(daemon.lines<{ ns: string; code: string }>('nserror')).toContainEqual(expect.objectContaining({ ns: 'app', code: 'WALWIRE_ERR_WAL_FORMAT' }));
    expect(daemon.generations('app')).toEqual([]);
    expect(daemon.records('app')).toEqual([]);
    const status = await daemon.status();
    expect(status.namespaces[0]).toMatchObject({ name: 'app', state: 'failed' });
    await daemon.stop();
    await s.writer.close();
  });

  it('frames appended to the same WAL while stopped are captured as one seq of the same generation', async () => {
    const s = await setup();
    const head = s.daemon.records('app').at(-1)!;
    await s.daemon.stop();
    for (let i = 0; i < 3; i++) await s.writer.exec(`INSERT INTO t(v) VALUES ('offline ${i}')`);
    const expected = readDatabaseSnapshot(s.db);
    const daemon = await restart(s);
    expect(daemon.generations('app')).toEqual([]);
    const rec = await daemon.waitForChecksum('app', imageChecksum(expected, s.pageSize));
    expect(rec).toMatchObject({ generation: s.generation, seq: head.seq + 1, commits: 3 });
    await s.writer.close();
    await daemon.stop();
    const contents = await readPrimaryLog(s.dataDir, 'app');
    expect(contents.records.map((r) => r.seq)).toEqual(Array.from({ length: head.seq + 1 }, (_, i) => i + 1));
  });
});
