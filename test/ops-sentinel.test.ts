/**
 * Dirty-shutdown recovery: both daemons keep `<data-dir>/daemon.running`
 * while they run and remove it on SIGTERM. After a kill -9 the leftover
 * sentinel makes the next start say so and report what verification did;
 * the pair converges again.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { assertConverged, makeTempDir, replicationUrl, runWriter, spawnWriter, startPrimaryProcess, startReplicaProcess, useHarness, waitForCatchUp, freePort } from './harness/index.js';

useHarness();

describe('daemon sentinel', () => {
  it('clean SIGTERM removes it; kill -9 leaves it, and the next start verifies, logs what it did, and converges', async () => {
    const dir = makeTempDir();
    const db = join(dir, 'app.db');
    const pDir = join(dir, 'p');
    const rDir = join(dir, 'r');
    await runWriter({ db }, { mode: 'load', txns: 50, rowsPerTxn: 5, payloadBytes: 200, ratePerSec: 0 });
    const port = await freePort();
    const pOpts = { dataDir: pDir, dbs: { app: db }, args: ['--port', String(port)] };
    const rOpts = { dataDir: rDir, url: replicationUrl(port), namespaces: ['app'] };
    let primary = await startPrimaryProcess(pOpts);
    let replica = await startReplicaProcess(rOpts);
    await waitForCatchUp(primary, replica, 'app', db);
    expect(existsSync(join(pDir, 'daemon.running'))).toBe(true);
    expect(existsSync(join(rDir, 'daemon.running'))).toBe(true);

    // Clean: SIGTERM removes both; the next start reports nothing unusual.
    expect((await replica.child.terminate()).code).toBe(0);
    expect((await primary.child.terminate()).code).toBe(0);
    expect(existsSync(join(pDir, 'daemon.running'))).toBe(false);
    expect(existsSync(join(rDir, 'daemon.running'))).toBe(false);
    primary = await startPrimaryProcess(pOpts);
    replica = await startReplicaProcess(rOpts);
    await waitForCatchUp(primary, replica, 'app', db);
    expect(primary.child.lines.join('\n')).not.toMatch(/unclean shutdown detected/);
    expect(replica.child.lines.join('\n')).not.toMatch(/unclean shutdown detected/);

    // Dirty: kill -9 both mid-stream.
    const writer = spawnWriter({ db }, { mode: 'load', txns: 2000, rowsPerTxn: 5, payloadBytes: 300, ratePerSec: 1000 });
    await new Promise((r) => setTimeout(r, 700));
    await replica.child.kill9();
    await primary.child.kill9();
    expect(existsSync(join(pDir, 'daemon.running'))).toBe(true);
    expect(existsSync(join(rDir, 'daemon.running'))).toBe(true);
    await writer.succeeded();
    primary = await startPrimaryProcess(pOpts);
    replica = await startReplicaProcess(rOpts);
    await waitForCatchUp(primary, replica, 'app', db);
    await assertConverged({ primaryDb: db, replicaDb: join(rDir, 'app', 'db.sqlite') });
    const pLines = primary.child.lines.join('\n');
    expect(pLines).toMatch(/"msg":"unclean shutdown detected: verifying replication logs and positions"/);
    const pReport = primary.child.lines.find((l) => l.includes('recovered after unclean shutdown'));
    expect(pReport).toBeDefined();
    expect((JSON.parse(pReport!) as { namespaces: { ns: string; log: { unclean: boolean } }[] }).namespaces[0]).toMatchObject({ ns: 'app', log: { unclean: true } });
    const rLines = replica.child.lines.join('\n');
    expect(rLines).toMatch(/"msg":"unclean shutdown detected: verifying databases, journals and cursors"/);
    const rReport = replica.child.lines.find((l) => l.includes('recovered after unclean shutdown'));
    expect(rReport).toBeDefined();
    expect((JSON.parse(rReport!) as { namespaces: { ns: string; decision: string }[] }).namespaces[0]).toMatchObject({ ns: 'app', decision: expect.any(String) });
  });
});
