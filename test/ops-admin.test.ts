/**
 * Operations endpoints on real processes: integrity checks on both daemons,
 * reset-replication (replicas bootstrap again and converge; other
 * namespaces untouched; corruption refused; kill -9 between its steps),
 * and the 401 answer of every endpoint.
 */
import { readdirSync, statSync } from 'node:fs';
import { openSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  TEST_TOKEN,
  assertConverged,
  freePort,
  makeTempDir,
  replicationUrl,
  runWriter,
  spawnWriter,
  sqlite3Cli,
  startPrimaryProcess,
  startReplicaProcess,
  useHarness,
  waitForCatchUp,
  type DaemonProcess,
} from './harness/index.js';

useHarness();

async function post(d: DaemonProcess, path: string, body?: unknown, token = TEST_TOKEN): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${d.port}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const generationOf = async (p: DaemonProcess, ns: string): Promise<string> => (await p.get(`/v1/namespaces/${ns}/head`)).body['generation'] as string;

/** Log segment files and their sizes (an untouched namespace keeps exactly these). */
function logFiles(dir: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const name of readdirSync(dir)) if (name.endsWith('.wwlog')) out[name] = statSync(join(dir, name)).size;
  return out;
}

describe('integrity-check', () => {
  it('quick and full on both daemons; unknown namespace 404; bad body 400; reset on a replica 400', async () => {
    const dir = makeTempDir();
    const db = join(dir, 'app.db');
    await runWriter({ db }, { mode: 'load', txns: 100, rowsPerTxn: 10, payloadBytes: 300, ratePerSec: 0 });
    const primary = await startPrimaryProcess({ dataDir: join(dir, 'p'), dbs: { app: db } });
    const replica = await startReplicaProcess({ dataDir: join(dir, 'r'), url: replicationUrl(primary.port), namespaces: ['app'] });
    await waitForCatchUp(primary, replica, 'app', db);
    // A writer keeps the apply worker busy while the replica checks: the
    // read-only connection waits for the lock instead of failing.
    const writer = spawnWriter({ db }, { mode: 'load', txns: 300, rowsPerTxn: 5, payloadBytes: 300, ratePerSec: 300 });
    for (const d of [primary, replica]) {
      expect(await post(d, '/v1/namespaces/app/integrity-check')).toEqual({ status: 200, body: { ns: 'app', ok: true, message: 'ok', check: 'quick' } });
      expect(await post(d, '/v1/namespaces/app/integrity-check', { full: true })).toEqual({ status: 200, body: { ns: 'app', ok: true, message: 'ok', check: 'full' } });
      const unknown = await post(d, '/v1/namespaces/nope/integrity-check');
      expect(unknown.status).toBe(404);
      expect(unknown.body['code']).toBe('WALWIRE_ERR_UNKNOWN_NAMESPACE');
      const bad = await post(d, '/v1/namespaces/app/integrity-check', { full: 'yes' });
      expect(bad.status).toBe(400);
      expect(bad.body['code']).toBe('WALWIRE_ERR_INVALID_OPTION');
    }
    const notPrimary = await post(replica, '/v1/namespaces/app/reset-replication');
    expect(notPrimary.status).toBe(400);
    expect(notPrimary.body['code']).toBe('WALWIRE_ERR_NOT_A_PRIMARY');
    await writer.succeeded();
  });

  it('a corrupt database answers ok:false with HTTP 200 (btree damage, and a file that is not a database)', async () => {
    const dir = makeTempDir();
    const db = join(dir, 'app.db');
    // Rollback-journal mode: the rows live in the database file itself.
    sqlite3Cli(db, "PRAGMA page_size=4096; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB); WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 3000) INSERT INTO t SELECT i, randomblob(200) FROM c;");
    const primary = await startPrimaryProcess({ dataDir: join(dir, 'p'), dbs: { app: db } });
    expect((await post(primary, '/v1/namespaces/app/integrity-check')).body['ok']).toBe(true);
    const fd = openSync(db, 'r+');
    writeSync(fd, Buffer.alloc(4096, 0x5a), 0, 4096, 4096 * 60);
    closeSync(fd);
    const quick = await post(primary, '/v1/namespaces/app/integrity-check');
    expect(quick.status).toBe(200);
    expect(quick.body).toMatchObject({ ok: false, check: 'quick' });
    expect(String(quick.body['message'])).not.toBe('ok');
    const full = await post(primary, '/v1/namespaces/app/integrity-check', { full: true });
    expect(full.body).toMatchObject({ ok: false, check: 'full' });
    // reset-replication refuses to start a generation from it, and the namespace stays loaded.
    const before = await generationOf(primary, 'app');
    const reset = await post(primary, '/v1/namespaces/app/reset-replication');
    expect(reset.status).toBe(500);
    expect(reset.body['code']).toBe('WALWIRE_ERR_DATABASE_CORRUPT');
    expect(String(reset.body['message'])).toMatch(/restore it from a backup/);
    expect(await generationOf(primary, 'app')).toBe(before);
    expect((await primary.get('/v1/status')).status).toBe(200);
    // Not a database at all: the open/prepare error is the check's answer.
    const fd2 = openSync(db, 'r+');
    writeSync(fd2, Buffer.alloc(100, 0x41), 0, 100, 0);
    closeSync(fd2);
    const broken = await post(primary, '/v1/namespaces/app/integrity-check');
    expect(broken.status).toBe(200);
    expect(broken.body).toMatchObject({ ok: false, check: 'quick' });
  });
});

describe('integrity-check off the event loop', () => {
  it('the daemon answers other requests while a full check reads a large database', async () => {
    const dir = makeTempDir();
    const db = join(dir, 'big.db');
    sqlite3Cli(db, "PRAGMA page_size=4096; CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v BLOB); CREATE INDEX t_k ON t(k); WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 150000) INSERT INTO t SELECT i, hex(randomblob(16)), randomblob(300) FROM c;");
    const primary = await startPrimaryProcess({ dataDir: join(dir, 'p'), dbs: { big: db } });
    let checkDone = 0;
    const check = post(primary, '/v1/namespaces/big/integrity-check', { full: true }).then((r) => {
      checkDone = performance.now();
      return r;
    });
    await new Promise((r) => setTimeout(r, 20));
    const statusAt = await primary.get('/v1/status').then(() => performance.now());
    const result = await check;
    expect(result.body).toMatchObject({ ok: true, check: 'full' });
    // Had the check run on the event loop, status would have waited for it.
    expect(statusAt).toBeLessThan(checkDone);
  });
});

describe('reset-replication', () => {
  it('starts a new generation; connected replicas bootstrap and converge; repeatable; the other namespace is untouched', async () => {
    const dir = makeTempDir();
    const db = join(dir, 'app.db');
    const other = join(dir, 'other.db');
    await runWriter({ db }, { mode: 'load', txns: 200, rowsPerTxn: 10, payloadBytes: 300, ratePerSec: 0 });
    await runWriter({ db: other }, { mode: 'load', txns: 50, rowsPerTxn: 10, payloadBytes: 300, ratePerSec: 0 });
    const primary = await startPrimaryProcess({ dataDir: join(dir, 'p'), dbs: { app: db, other } });
    const replica = await startReplicaProcess({ dataDir: join(dir, 'r'), url: replicationUrl(primary.port), namespaces: ['app', 'other'] });
    await waitForCatchUp(primary, replica, 'app', db);
    await waitForCatchUp(primary, replica, 'other', other);
    const otherGen = await generationOf(primary, 'other');
    const otherLog = logFiles(join(dir, 'p', 'other', 'log'));
    const first = await generationOf(primary, 'app');

    const writer = spawnWriter({ db }, { mode: 'load', txns: 400, rowsPerTxn: 5, payloadBytes: 300, ratePerSec: 400 });
    await new Promise((r) => setTimeout(r, 200));
    const reset = await post(primary, '/v1/namespaces/app/reset-replication');
    expect(reset.status).toBe(200);
    expect(reset.body['elapsed_ms']).toEqual(expect.any(Number));
    expect(reset.body['previous']).toBe(first);
    const second = await generationOf(primary, 'app');
    expect(second).not.toBe(first);
    expect(reset.body['generation']).toBe(second);
    await writer.succeeded();
    await waitForCatchUp(primary, replica, 'app', db);
    await assertConverged({ primaryDb: db, replicaDb: join(dir, 'r', 'app', 'db.sqlite') });

    // Repeating is safe: yet another generation, converged again.
    const again = await post(primary, '/v1/namespaces/app/reset-replication', {});
    expect(again.status).toBe(200);
    expect(await generationOf(primary, 'app')).not.toBe(second);
    await waitForCatchUp(primary, replica, 'app', db);
    await assertConverged({ primaryDb: db, replicaDb: join(dir, 'r', 'app', 'db.sqlite') });

    // Only app's log and snapshots changed.
    expect(await generationOf(primary, 'other')).toBe(otherGen);
    expect(logFiles(join(dir, 'p', 'other', 'log'))).toEqual(otherLog);
    await waitForCatchUp(primary, replica, 'other', other);
    const unknown = await post(primary, '/v1/namespaces/nope/reset-replication');
    expect(unknown.status).toBe(404);
    expect(unknown.body['code']).toBe('WALWIRE_ERR_UNKNOWN_NAMESPACE');
    const lines = primary.child.lines.join('\n');
    expect(lines).toMatch(/"msg":"reset-replication started"/);
    expect(lines).toMatch(/"ms":\d+[^\n]*"msg":"reset-replication finished"/);
  });

  for (const point of ['primary.reset.after-check', 'primary.reset.after-clear']) {
    it(`kill -9 at ${point}: the restarted primary serves a consistent generation and the replica converges`, async () => {
      const dir = makeTempDir();
      const db = join(dir, 'app.db');
      await runWriter({ db }, { mode: 'load', txns: 200, rowsPerTxn: 10, payloadBytes: 300, ratePerSec: 0 });
      const port = await freePort();
      const pOpts = { dataDir: join(dir, 'p'), dbs: { app: db }, args: ['--port', String(port)] };
      const primary = await startPrimaryProcess({ ...pOpts, env: { WALWIRE_FAILPOINTS: `${point}=kill` } });
      const replica = await startReplicaProcess({ dataDir: join(dir, 'r'), url: replicationUrl(port), namespaces: ['app'] });
      await waitForCatchUp(primary, replica, 'app', db);
      const before = await generationOf(primary, 'app');
      await post(primary, '/v1/namespaces/app/reset-replication').catch(() => undefined);
      const exit = await primary.child.exited;
      expect(exit.code).not.toBe(0);
      // Killed before the new generation: the restart continues the old one
      // (and writes the snapshot image a kill after step 3 left missing).
      // Writes while it is down would restart the WAL the reset checkpointed
      // (a new generation, as after any stop); so they come after.
      const restarted = await startPrimaryProcess(pOpts);
      expect(await generationOf(restarted, 'app')).toBe(before);
      await runWriter({ db }, { mode: 'load', txns: 50, rowsPerTxn: 10, payloadBytes: 300, ratePerSec: 0 });
      await waitForCatchUp(restarted, replica, 'app', db);
      await assertConverged({ primaryDb: db, replicaDb: join(dir, 'r', 'app', 'db.sqlite') });
      // A fresh replica bootstraps from the (rewritten) image.
      const fresh = await startReplicaProcess({ dataDir: join(dir, 'r2'), url: replicationUrl(port), namespaces: ['app'] });
      await waitForCatchUp(restarted, fresh, 'app', db);
      await assertConverged({ primaryDb: db, replicaDb: join(dir, 'r2', 'app', 'db.sqlite') });
      // The reset itself then completes; both replicas follow.
      expect((await post(restarted, '/v1/namespaces/app/reset-replication')).status).toBe(200);
      for (const [r, d] of [[replica, 'r'], [fresh, 'r2']] as const) {
        await waitForCatchUp(restarted, r, 'app', db);
        await assertConverged({ primaryDb: db, replicaDb: join(dir, d, 'app', 'db.sqlite') });
      }
    });
  }
});

describe('authentication', () => {
  it('every endpoint of both daemons answers 401 to a missing or wrong token', async () => {
    const dir = makeTempDir();
    const db = join(dir, 'app.db');
    await runWriter({ db }, { mode: 'load', txns: 5, rowsPerTxn: 1, payloadBytes: 10, ratePerSec: 0 });
    const primary = await startPrimaryProcess({ dataDir: join(dir, 'p'), dbs: { app: db } });
    const replica = await startReplicaProcess({ dataDir: join(dir, 'r'), url: replicationUrl(primary.port), namespaces: ['app'] });
    const generation = await generationOf(primary, 'app');
    const endpoints: [DaemonProcess, string, string][] = [
      [primary, 'GET', '/v1/status'],
      [primary, 'GET', '/v1/namespaces/app/head'],
      [primary, 'GET', '/metrics'],
      [primary, 'POST', '/v1/namespaces/app/integrity-check'],
      [primary, 'POST', '/v1/namespaces/app/reset-replication'],
      [primary, 'POST', '/v1/namespaces'],
      [primary, 'DELETE', '/v1/namespaces/app'],
      [primary, 'GET', '/v1/replicate'],
      [primary, 'GET', '/v1/no-such-route'],
      [replica, 'GET', '/v1/status'],
      [replica, 'GET', '/v1/namespaces/app/wait?seq=1'],
      [replica, 'GET', '/metrics'],
      [replica, 'POST', '/v1/namespaces/app/integrity-check'],
      [replica, 'POST', '/v1/namespaces/app/reset-replication'],
      [replica, 'POST', '/v1/namespaces'],
      [replica, 'DELETE', '/v1/namespaces/app'],
      [replica, 'GET', '/v1/no-such-route'],
    ];
    for (const [d, method, path] of endpoints) {
      for (const headers of [{}, { authorization: 'Bearer wrong' }, { authorization: `Basic ${TEST_TOKEN}` }] as Record<string, string>[]) {
        const res = await fetch(`http://127.0.0.1:${d.port}${path}`, { method, headers });
        expect({ method, path, status: res.status }).toEqual({ method, path, status: 401 });
        expect(((await res.json()) as { code: string }).code).toBe('WALWIRE_ERR_UNAUTHORIZED');
      }
    }
    // The unauthenticated reset and deletes did nothing.
    expect(await generationOf(primary, 'app')).toBe(generation);
    expect((await replica.get('/v1/namespaces/app/wait?seq=0')).status).toBe(200);
  });
});
