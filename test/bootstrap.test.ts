/**
 * Bootstrap: a replica with no copy receives a snapshot image in chunks,
 * staged durably one by one, and resumes an interrupted transfer from the
 * first chunk it had not staged. Real processes, a throttling proxy so the
 * transfer lasts long enough to be interrupted, and kill -9.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readStaging } from '@walwire/replica';
import {
  ChaosProxy,
  assertConverged,
  freePort,
  makeTempDir,
  replicationUrl,
  runWriter,
  spawnInvariantReader,
  spawnWriter,
  sqlite3Cli,
  startPrimaryProcess,
  startReplicaProcess,
  useHarness,
  waitForCatchUp,
} from './harness/index.js';

useHarness();

const MiB = 1024 * 1024;

interface LogLine {
  msg: string;
  index?: number;
  fromChunk?: number;
  chunks?: number;
  percent?: number;
  etaMs?: number | null;
  bytesPerSec?: number;
}

const parse = (lines: readonly string[]): LogLine[] =>
  lines.flatMap((l) => {
    try {
      return [JSON.parse(l) as LogLine];
    } catch {
      return [];
    }
  });

describe('resumable bootstrap', () => {
  it('kill -9 mid-bootstrap three times: resumes from the staged chunk each time, re-receiving < 2 chunks, and converges', async () => {
    const dir = makeTempDir();
    const db = join(dir, 'app.db');
    await runWriter({ db }, { mode: 'load', txns: 40, rowsPerTxn: 100, payloadBytes: 4000, ratePerSec: 0 }); // ~16 MiB
    const primary = await startPrimaryProcess({ dataDir: join(dir, 'p'), dbs: { app: db }, args: ['--snapshot-chunk-bytes', String(MiB)] });
    const proxy = await ChaosProxy.start(primary.port);
    proxy.throttle(6 * MiB);
    const replicaDir = join(dir, 'r');
    const start = () =>
      startReplicaProcess({ dataDir: replicaDir, url: `${proxy.url}/v1/replicate`, namespaces: ['app'], args: ['--log-level', 'debug'] });
    try {
      const resumes: { staged: number; received: number; from: number }[] = [];
      let replica = await start();
      for (let crash = 0; crash < 3; crash++) {
        // Let some chunks arrive, then kill at a moment the test does not control.
        await replica.child.waitForLine(new RegExp(`"index":${4 + crash * 3},`), 30_000);
        await new Promise((r) => setTimeout(r, 50 + crash * 70));
        await replica.child.kill9();
        const received = Math.max(...parse(replica.child.lines).filter((l) => l.msg === 'snapshot chunk received').map((l) => l.index!));
        const staged = (await readStaging(join(replicaDir, 'app')))?.staged ?? 0;
        replica = await start();
        const first = JSON.parse(await replica.child.waitForLine(/"msg":"bootstrap (resumed|started)"/, 30_000)) as LogLine;
        resumes.push({ staged, received, from: first.fromChunk ?? 0 });
      }
      proxy.throttle(0);
      const writer = spawnWriter({ db }, { mode: 'load', txns: 50, rowsPerTxn: 2, payloadBytes: 100, ratePerSec: 200 });
      await writer.succeeded();
      await waitForCatchUp(primary, replica, 'app', db, 60_000);
      await assertConverged({ primaryDb: db, replicaDb: join(replicaDir, 'app', 'db.sqlite') });
      for (const r of resumes) {
        // Resumed exactly after what was durably staged, so only chunks received
        // but not yet staged at the crash come again: fewer than two.
        expect(r.from).toBe(r.staged);
        expect(r.from).toBeGreaterThan(0);
        expect(r.received + 1 - r.from).toBeLessThan(2);
      }
      expect(existsSync(join(replicaDir, 'app', 'staging'))).toBe(false);
    } finally {
      await proxy.close();
    }
  }, 120_000);

  it('a chunk corrupted in transit is detected, fetched again, and never installed', async () => {
    const dir = makeTempDir();
    const db = join(dir, 'app.db');
    await runWriter({ db }, { mode: 'load', txns: 20, rowsPerTxn: 100, payloadBytes: 2000, ratePerSec: 0 }); // ~4 MiB
    const primary = await startPrimaryProcess({ dataDir: join(dir, 'p'), dbs: { app: db }, args: ['--snapshot-chunk-bytes', String(MiB)] });
    const proxy = await ChaosProxy.start(primary.port);
    // 2.5 MiB into the stream: inside a SNAPSHOT_CHUNK payload.
    proxy.flipByte('down', Math.floor(2.5 * MiB), 0x20);
    try {
      const replica = await startReplicaProcess({ dataDir: join(dir, 'r'), url: `${proxy.url}/v1/replicate`, namespaces: ['app'] });
      await waitForCatchUp(primary, replica, 'app', db, 60_000);
      await assertConverged({ primaryDb: db, replicaDb: join(dir, 'r', 'app', 'db.sqlite') });
      expect(proxy.stats.flips).toBe(1);
      await replica.child.waitForLine(/"msg":"bootstrap complete: snapshot installed"/);
      const logs = parse(replica.child.lines);
      expect(replica.child.lines.some((l) => l.includes('WALWIRE_ERR_FRAME_CHECKSUM'))).toBe(true);
      // The second transfer resumed after the chunks staged before the corruption.
      expect(logs.some((l) => l.msg === 'bootstrap resumed' && (l.fromChunk ?? 0) > 0)).toBe(true);
      expect(logs.filter((l) => l.msg === 'bootstrap complete: snapshot installed')).toHaveLength(1);
      const progress = logs.filter((l) => l.msg === 'bootstrap progress');
      expect(progress.length).toBeGreaterThan(0);
      expect(progress[0]).toHaveProperty('percent');
      expect(progress[0]).toHaveProperty('etaMs');
    } finally {
      await proxy.close();
    }
  }, 120_000);
});

describe('generation change while a replica is connected', () => {
  it('the replica bootstraps again and converges; its reader never sees a torn state', async () => {
    const dir = makeTempDir();
    const db = join(dir, 'app.db');
    await spawnWriter({ db }, { mode: 'bank', accounts: 300, txns: 200, ratePerSec: 0 }).succeeded();
    const port = await freePort();
    let primary = await startPrimaryProcess({ dataDir: join(dir, 'p'), dbs: { app: db }, args: ['--port', String(port)] });
    const replica = await startReplicaProcess({ dataDir: join(dir, 'r'), url: replicationUrl(port), namespaces: ['app'] });
    await waitForCatchUp(primary, replica, 'app', db);
    const replicaDb = join(dir, 'r', 'app', 'db.sqlite');
    const reader = spawnInvariantReader(replicaDb, 5000);
    await reader.waitForLine(/^ready$/);
    const before = ((await primary.get('/v1/namespaces/app/head')).body['generation']) as string;
    await primary.child.terminate();
    // While the daemon is down another process checkpoints with TRUNCATE and writes on:
    // continuity cannot be proven, so the next start must begin a new generation.
    sqlite3Cli(db, '.timeout 5000\nPRAGMA wal_checkpoint(TRUNCATE);');
    await spawnWriter({ db }, { mode: 'bank', accounts: 300, txns: 150, ratePerSec: 0 }).succeeded();
    primary = await startPrimaryProcess({ dataDir: join(dir, 'p'), dbs: { app: db }, args: ['--port', String(port)] });
    await primary.child.waitForLine(/"msg":"new generation"/);
    const after = ((await primary.get('/v1/namespaces/app/head')).body['generation']) as string;
    expect(after).not.toBe(before);
    await spawnWriter({ db }, { mode: 'bank', accounts: 300, txns: 100, ratePerSec: 500 }).succeeded();
    await waitForCatchUp(primary, replica, 'app', db, 60_000);
    await assertConverged({ primaryDb: db, replicaDb });
    expect(replica.child.lines.some((l) => l.includes('primary requires a snapshot') && l.includes('generation changed'))).toBe(true);
    await reader.terminate();
    expect(reader.lines.filter((l) => l.startsWith('violation'))).toEqual([]);
    expect(reader.lines.at(-1)).toMatch(/^checks [1-9]\d* violations 0/);
  }, 120_000);
});

describe('large bootstrap', () => {
  it('a ~200 MB database bootstraps while the primary keeps writing, and converges page-exact', async () => {
    const dir = makeTempDir();
    const db = join(dir, 'app.db');
    // ~200 MB: 2,000 transactions of 25 rows × 4 KB.
    await runWriter({ db }, { mode: 'load', txns: 2000, rowsPerTxn: 25, payloadBytes: 4000, ratePerSec: 0 });
    const primary = await startPrimaryProcess({ dataDir: join(dir, 'p'), dbs: { app: db } });
    const writer = spawnWriter({ db }, { mode: 'load', txns: 3000, rowsPerTxn: 2, payloadBytes: 300, ratePerSec: 300 });
    await writer.waitForLine(/^committed 50$/);
    const started = Date.now();
    const replica = await startReplicaProcess({ dataDir: join(dir, 'r'), url: replicationUrl(primary.port), namespaces: ['app'] });
    await replica.child.waitForLine(/"msg":"bootstrap complete: snapshot installed"/, 120_000);
    const bootstrapMs = Date.now() - started;
    await writer.terminate();
    await waitForCatchUp(primary, replica, 'app', db, 60_000);
    await assertConverged({ primaryDb: db, replicaDb: join(dir, 'r', 'app', 'db.sqlite') });
    const begun = JSON.parse(replica.child.lines.find((l) => l.includes('"msg":"bootstrap started"'))!) as { bytes: number };
    expect(begun.bytes).toBeGreaterThan(190_000_000);
    console.log(`bootstrap of ${(begun.bytes / 1e6).toFixed(0)} MB took ${bootstrapMs} ms while the writer ran`);
  }, 240_000);
});

describe('divergence', () => {
  it('a replica page corrupted while stopped is caught at start-up; the replica bootstraps again by itself', async () => {
    const dir = makeTempDir();
    const db = join(dir, 'app.db');
    await runWriter({ db }, { mode: 'load', txns: 30, rowsPerTxn: 20, payloadBytes: 300, ratePerSec: 0 });
    const primary = await startPrimaryProcess({ dataDir: join(dir, 'p'), dbs: { app: db } });
    const start = () => startReplicaProcess({ dataDir: join(dir, 'r'), url: replicationUrl(primary.port), namespaces: ['app'] });
    let replica = await start();
    await waitForCatchUp(primary, replica, 'app', db);
    await replica.child.terminate();
    const replicaDb = join(dir, 'r', 'app', 'db.sqlite');
    const image = readFileSync(replicaDb);
    image.fill(0x5a, 3 * 4096 + 100, 3 * 4096 + 200); // garbage in page 4: a silent disk error
    writeFileSync(replicaDb, image);
    replica = await start();
    await replica.child.waitForLine(/"msg":"bootstrap complete: snapshot installed"/, 30_000);
    await runWriter({ db }, { mode: 'load', txns: 10, rowsPerTxn: 2, payloadBytes: 100, ratePerSec: 0 });
    await waitForCatchUp(primary, replica, 'app', db);
    await assertConverged({ primaryDb: db, replicaDb });
    expect(replica.child.lines.some((l) => l.includes('replica diverged'))).toBe(true);
    expect(replica.child.lines.some((l) => l.includes('requesting a snapshot'))).toBe(true);
  }, 60_000);
});
