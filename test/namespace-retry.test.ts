/**
 * A namespace the primary cannot open when it starts: a file stands where
 * its database's directory should be, so the directory cannot be created
 * (as with a volume that is not mounted yet). The primary starts
 * the others, answers the missing one's routes with 503
 * WALWIRE_ERR_NAMESPACE_UNAVAILABLE, retries the open with doubling delays,
 * and once it opens, reconnects the replica that asked for it meanwhile so
 * that it bootstraps and streams it. Real processes on loopback.
 *
 * Found by the chaos soak: a namespace whose start failed answered 404
 * WALWIRE_ERR_UNKNOWN_NAMESPACE until the daemon restarted, and the soak's
 * blob client, like any client, took a 404 on DELETE for "already gone".
 */
import { randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  TEST_TOKEN,
  assertConverged,
  makeTempDir,
  putBlob,
  replicationUrl,
  runWriter,
  startPrimaryProcess,
  startReplicaProcess,
  useHarness,
  waitForCatchUp,
  waitForDurable,
} from './harness/index.js';

useHarness();

describe('a namespace that fails to start', () => {
  it('answers 503 WALWIRE_ERR_NAMESPACE_UNAVAILABLE while it is retried, starts once it can, and a replica that asked for it meanwhile streams it (regression: 404 WALWIRE_ERR_UNKNOWN_NAMESPACE and no retry until a restart)', async () => {
    const dir = makeTempDir();
    const good = join(dir, 'good.db');
    await runWriter({ db: good }, { mode: 'load', txns: 5, rowsPerTxn: 10, payloadBytes: 200, ratePerSec: 0 });
    const later = join(dir, 'volume');
    const app = join(later, 'app.db');
    writeFileSync(later, 'not a directory');
    const primary = await startPrimaryProcess({ dataDir: join(dir, 'p'), dbs: { good, app }, args: ['--namespace-retry-ms', '200'] });

    const head = await primary.get('/v1/namespaces/app/head');
    expect(head.status).toBe(503);
    expect(head.body['code']).toBe('WALWIRE_ERR_NAMESPACE_UNAVAILABLE');
    expect(String(head.body['message'])).toMatch(/namespace app is not running: it failed to start \(.+\); \d+ failed attempt\(s\), next attempt in \d+ ms/);
    const put = await fetch(`http://127.0.0.1:${primary.port}/v1/namespaces/app/blobs/early`, { method: 'PUT', headers: { authorization: `Bearer ${TEST_TOKEN}` }, body: randomBytes(100) });
    expect(put.status).toBe(503);
    expect(((await put.json()) as { code: string }).code).toBe('WALWIRE_ERR_NAMESPACE_UNAVAILABLE');
    const del = await fetch(`http://127.0.0.1:${primary.port}/v1/namespaces/app/blobs/early`, { method: 'DELETE', headers: { authorization: `Bearer ${TEST_TOKEN}` } });
    expect(del.status).toBe(503);
    // Not configured at all is still 404.
    const unknown = await primary.get('/v1/namespaces/nope/head');
    expect([unknown.status, unknown.body['code']]).toEqual([404, 'WALWIRE_ERR_UNKNOWN_NAMESPACE']);

    // The replica streams the namespace that runs, and is told to wait for the other.
    const replica = await startReplicaProcess({ dataDir: join(dir, 'r'), url: replicationUrl(primary.port), namespaces: ['good', 'app'] });
    await waitForCatchUp(primary, replica, 'good', good, 30_000);
    await replica.child.waitForLine(/WALWIRE_ERR_NAMESPACE_UNAVAILABLE/, 10_000);
    // A replica that asks for nothing else is refused with close 1013 (try again later), and keeps retrying.
    const only = await startReplicaProcess({ dataDir: join(dir, 'r2'), url: replicationUrl(primary.port), namespaces: ['app'] });
    await only.child.waitForLine(/"code":1013,.*"msg":"disconnected"/, 10_000);
    // Retried meanwhile (the delay doubles from 200 ms).
    await primary.child.waitForLine(/"ns":"app".*"attempts":3.*namespace failed to start; retrying later/, 10_000);

    rmSync(later); // the primary creates the directory and the database on its next attempt
    const started = JSON.parse(await primary.child.waitForLine(/"ns":"app".*"msg":"namespace started"/, 30_000)) as { failedAttempts?: number };
    expect(started.failedAttempts).toBeGreaterThanOrEqual(3);
    await runWriter({ db: app }, { mode: 'load', txns: 20, rowsPerTxn: 10, payloadBytes: 500, ratePerSec: 0 });
    const body = randomBytes(50_000);
    await putBlob(primary, 'app', 'late', body);

    await waitForCatchUp(primary, replica, 'app', app, 60_000);
    await waitForDurable(primary, replica, 'app', 60_000);
    await waitForCatchUp(primary, only, 'app', app, 60_000);
    await assertConverged({ primaryDb: app, replicaDb: join(dir, 'r2', 'app', 'db.sqlite') });
    await assertConverged({ primaryDb: app, replicaDb: join(dir, 'r', 'app', 'db.sqlite'), primaryBlobs: join(dir, 'p', 'app', 'blobs'), replicaBlobs: join(dir, 'r', 'app', 'blobs') });
    await assertConverged({ primaryDb: good, replicaDb: join(dir, 'r', 'good', 'db.sqlite') });
    // The replica was reconnected for it, not left waiting for an unrelated reconnect.
    expect(primary.child.lines.some((l) => l.includes('namespace app is running now; reconnect to stream it'))).toBe(true);
  });
});
