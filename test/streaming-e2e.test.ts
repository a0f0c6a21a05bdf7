/**
 * End to end, all real processes: writers (better-sqlite3 and the sqlite3
 * CLI) on the primary database, walwire-primary, walwire-replica. The
 * replica bootstraps from a snapshot, streams, and converges page-exact.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  assertConverged,
  makeTempDir,
  replicationUrl,
  runWriter,
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
    const pstatus = await primary.get('/v1/status');
    expect((pstatus.body['replicas'] as unknown[]).length).toBe(1);
  });
});
