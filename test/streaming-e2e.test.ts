/**
 * End to end, all real processes: writers (better-sqlite3 and the sqlite3
 * CLI) on the primary database, walwire-primary, walwire-replica. The
 * replica bootstraps from a snapshot, streams, and converges page-exact.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  assertConverged,
  makeTempDir,
  replicationUrl,
  runWriter,
  spawnCommand,
  spawnWriter,
  sqlite3Cli,
  startPrimaryProcess,
  startReplicaProcess,
  useHarness,
  waitForCatchUp,
} from './harness/index.js';

useHarness();

describe('streaming end to end', () => {
  it('a fresh replica bootstraps, then streams writes from better-sqlite3 and the sqlite3 CLI, page-exact', async () => {
    const dir = makeTempDir();
    const db = join(dir, 'app.db');
    await runWriter({ db }, { mode: 'load', txns: 200, rowsPerTxn: 5, payloadBytes: 200, ratePerSec: 0 });
    const primary = await startPrimaryProcess({ dataDir: join(dir, 'p'), dbs: { app: db } });
    const replica = await startReplicaProcess({ dataDir: join(dir, 'r'), url: replicationUrl(primary.port), namespaces: ['app'] });
    await waitForCatchUp(primary, replica, 'app', db);
    await runWriter({ db }, { mode: 'load', txns: 300, rowsPerTxn: 10, payloadBytes: 3000, ratePerSec: 0 });
    sqlite3Cli(db, "BEGIN; CREATE TABLE cli(x); INSERT INTO cli VALUES (randomblob(20000)); UPDATE load SET v = zeroblob(10) WHERE id % 7 = 0; COMMIT; DELETE FROM load WHERE id < 100;");
    await runWriter({ db }, { mode: 'script', statements: ['VACUUM'] });
    const seq = await waitForCatchUp(primary, replica, 'app', db);
    expect(seq).toBeGreaterThan(1);
    await assertConverged({ primaryDb: db, replicaDb: join(dir, 'r', 'app', 'db.sqlite') });
    const status = await replica.get('/v1/status');
    expect(status.status).toBe(200);
    expect((status.body['connection'] as { connected: boolean }).connected).toBe(true);
    // The primary tracks each replica's lag; once the ACKs arrive it is zero.
    type Lag = { replicas: { namespaces: { lagSeqs: number; lagBytes: number; lagMs: number; appliedSeq: number }[] }[] };
    let lag: Lag['replicas'][0]['namespaces'][0] | undefined;
    for (let i = 0; i < 100; i++) {
      lag = ((await primary.get('/v1/status')).body as unknown as Lag).replicas[0]?.namespaces[0];
      if (lag?.appliedSeq === seq) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(lag).toMatchObject({ appliedSeq: seq, lagSeqs: 0, lagBytes: 0, lagMs: 0 });
  });
});

describe('regressions', () => {
  it('txns after a snapshot wait for its install (bootstrap while a writer runs: no failed apply, no reconnect)', async () => {
    const dir = makeTempDir();
    const db = join(dir, 'app.db');
    await runWriter({ db }, { mode: 'load', txns: 50, rowsPerTxn: 20, payloadBytes: 500, ratePerSec: 0 });
    const primary = await startPrimaryProcess({ dataDir: join(dir, 'p'), dbs: { app: db } });
    const writer = spawnWriter({ db }, { mode: 'load', txns: 400, rowsPerTxn: 2, payloadBytes: 300, ratePerSec: 400 });
    await writer.waitForLine(/^committed 20$/);
    const replica = await startReplicaProcess({ dataDir: join(dir, 'r'), url: replicationUrl(primary.port), namespaces: ['app'] });
    await writer.succeeded();
    await waitForCatchUp(primary, replica, 'app', db);
    await assertConverged({ primaryDb: db, replicaDb: join(dir, 'r', 'app', 'db.sqlite') });
    const status = await replica.get('/v1/status');
    expect((status.body['connection'] as { reconnects: number; lastError: unknown }).reconnects).toBe(0);
    expect(replica.child.lines.filter((l) => l.includes('apply failed'))).toEqual([]);
  });
});

describe('npm start', () => {
  it('runs a primary and a replica as two processes with a write load and live lag, then exits cleanly', async () => {
    const demo = spawnCommand(process.execPath, [fileURLToPath(new URL('../scripts/start.mjs', import.meta.url)), '--seconds', '3', '--rate', '50']);
    await demo.succeeded(60_000);
    const rows = demo.lines.filter((l) => /^primary seq +\d+ \| replica applied +\d+/.test(l));
    expect(rows.length).toBeGreaterThanOrEqual(2);
    expect(demo.lines.at(-1)).toBe('stopped; temp data removed');
  });
});
