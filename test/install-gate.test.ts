/**
 * What a replica receives after SNAPSHOT_END waits behind the install (the
 * gate), and an install can wait a long time for a reader's lock. If the
 * connection drops meanwhile, the blob events queued behind the gate are
 * dropped with it, and the next connection must re-send them.
 *
 * Found by the chaos soak (seed 1636258080): the transactions queued behind
 * the gate were still applied when the gate opened, and the install had
 * just reset the durable cursor's tracker, so nothing held it. The durable
 * cursor moved past a BLOB_DELETE that never ran, the next connection
 * resumed after it, and the replica kept a blob the primary had deleted.
 * Real processes; the drop is a TCP cut in a proxy, the lock a reader
 * process holding a read transaction.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  ChaosProxy,
  TEST_TOKEN,
  assertConverged,
  blobFiles,
  makeTempDir,
  putBlob,
  runWriter,
  spawnFixture,
  startPrimaryProcess,
  startReplicaProcess,
  useHarness,
  waitForCatchUp,
  waitForDurable,
} from './harness/index.js';

useHarness();

const count = (child: { readonly lines: readonly string[] }, pattern: RegExp): number => child.lines.filter((l) => pattern.test(l)).length;

/** Waits until `child` has printed `n` lines matching `pattern` (waitForLine also matches earlier lines). */
async function waitForCount(child: { readonly lines: readonly string[] }, pattern: RegExp, n: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (count(child, pattern) < n) {
    if (Date.now() > deadline) throw new Error(`fewer than ${n} lines matching ${pattern} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
const DISCONNECTED = /"msg":"disconnected"/;
const INSTALLED = /"msg":"bootstrap complete: snapshot installed"/;

describe('blob events queued behind a snapshot install', () => {
  it('are re-sent when the connection drops before the install ends: a blob deleted meanwhile is deleted on the replica (regression: the queued transactions moved the durable cursor past the BLOB_DELETE)', async () => {
    const dir = makeTempDir();
    const db = join(dir, 'app.db');
    await runWriter({ db }, { mode: 'load', txns: 10, rowsPerTxn: 20, payloadBytes: 500, ratePerSec: 0 });
    const primary = await startPrimaryProcess({ dataDir: join(dir, 'p'), dbs: { app: db } });
    const proxy = await ChaosProxy.start(primary.port);
    try {
      const replica = await startReplicaProcess({ dataDir: join(dir, 'r'), url: `${proxy.url}/v1/replicate`, namespaces: ['app'] });
      await putBlob(primary, 'app', 'doomed', randomBytes(10_000));
      await waitForCatchUp(primary, replica, 'app', db);
      await waitForDurable(primary, replica, 'app');
      const replicaBlobs = join(dir, 'r', 'app', 'blobs');
      expect(blobFiles(replicaBlobs).has('doomed')).toBe(true);

      // A reader holds the replica's database, so the next install waits for its lock.
      const reader = spawnFixture('replica-long-reader', [JSON.stringify({ db: join(dir, 'r', 'app', 'db.sqlite'), table: 'sqlite_schema' })]);
      await reader.waitForLine(/^holding /);
      const reset = await fetch(`http://127.0.0.1:${primary.port}/v1/namespaces/app/reset-replication`, { method: 'POST', headers: { authorization: `Bearer ${TEST_TOKEN}` } });
      expect(reset.status).toBe(200);
      await replica.child.waitForLine(/apply delayed: readers hold the database lock/, 30_000);

      // Streamed after SNAPSHOT_END, so queued behind the waiting install: a delete and some transactions.
      const del = await fetch(`http://127.0.0.1:${primary.port}/v1/namespaces/app/blobs/doomed`, { method: 'DELETE', headers: { authorization: `Bearer ${TEST_TOKEN}` } });
      expect(del.status).toBe(200);
      await runWriter({ db }, { mode: 'load', txns: 5, rowsPerTxn: 5, payloadBytes: 200, ratePerSec: 0 });
      await new Promise((r) => setTimeout(r, 500)); // sent by the primary and received
      const installs = count(replica.child, INSTALLED);
      const drops = count(replica.child, DISCONNECTED);
      proxy.refuse(true); // the next connection waits until the install is done
      proxy.cut();
      await waitForCount(replica.child, DISCONNECTED, drops + 1, 10_000);
      reader.process.stdin!.write('go\n');
      await reader.waitForLine(/^released /);
      await waitForCount(replica.child, INSTALLED, installs + 1, 30_000);
      await new Promise((r) => setTimeout(r, 300)); // the queued transactions of the dropped connection settle
      proxy.heal();

      await waitForCatchUp(primary, replica, 'app', db, 60_000);
      await waitForDurable(primary, replica, 'app', 60_000);
      expect(blobFiles(replicaBlobs).has('doomed')).toBe(false);
      await assertConverged({ primaryDb: db, replicaDb: join(dir, 'r', 'app', 'db.sqlite'), primaryBlobs: join(dir, 'p', 'app', 'blobs'), replicaBlobs });
    } finally {
      await proxy.close();
    }
  });
});
