/**
 * Namespaces created and deleted at runtime through the admin API: a new
 * namespace on the primary, added on a replica, bootstraps and converges
 * while another namespace keeps streaming in the same generation; deleting
 * it removes only its own state; the changes survive a restart.
 */
import { existsSync } from 'node:fs';
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
  startPrimaryProcess,
  startReplicaProcess,
  useHarness,
  waitForCatchUp,
  type DaemonProcess,
} from './harness/index.js';

useHarness();

async function call(d: DaemonProcess, method: string, path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${d.port}${path}`, {
    method,
    headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('namespaces at runtime', () => {
  it('create on the primary + add on a replica converges; delete/remove touch nothing else; persisted across restarts', async () => {
    const dir = makeTempDir();
    const app = join(dir, 'app.db');
    const extra = join(dir, 'extra.db');
    await runWriter({ db: app }, { mode: 'load', txns: 100, rowsPerTxn: 5, payloadBytes: 200, ratePerSec: 0 });
    await runWriter({ db: extra }, { mode: 'load', txns: 100, rowsPerTxn: 5, payloadBytes: 200, ratePerSec: 0 });
    const port = await freePort();
    const pOpts = { dataDir: join(dir, 'p'), dbs: { app }, args: ['--port', String(port)] };
    let primary = await startPrimaryProcess(pOpts);
    const replica = await startReplicaProcess({ dataDir: join(dir, 'r'), url: replicationUrl(port), namespaces: ['app'] });
    await waitForCatchUp(primary, replica, 'app', app);
    const appGeneration = (await primary.get('/v1/namespaces/app/head')).body['generation'];

    const writer = spawnWriter({ db: app }, { mode: 'load', txns: 600, rowsPerTxn: 3, payloadBytes: 200, ratePerSec: 300 });
    const created = await call(primary, 'POST', '/v1/namespaces', { name: 'extra', path: extra });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ ns: 'extra', generation: expect.stringMatching(/^[0-9a-f]{32}$/) });
    expect((await call(primary, 'POST', '/v1/namespaces', { name: 'extra', path: extra })).body['code']).toBe('WALWIRE_ERR_NAMESPACE_EXISTS');
    expect((await call(primary, 'POST', '/v1/namespaces', { name: 'Bad Name', path: extra })).status).toBe(400);
    expect((await call(primary, 'POST', '/v1/namespaces', { name: 'nopath' })).status).toBe(400);
    const added = await call(replica, 'POST', '/v1/namespaces', { name: 'extra' });
    expect(added.status).toBe(201);
    const dup = await call(replica, 'POST', '/v1/namespaces', { name: 'extra' });
    expect([dup.status, dup.body['code']]).toEqual([409, 'WALWIRE_ERR_NAMESPACE_EXISTS']);
    await runWriter({ db: extra }, { mode: 'load', txns: 50, rowsPerTxn: 5, payloadBytes: 200, ratePerSec: 0 });
    await waitForCatchUp(primary, replica, 'extra', extra);
    await assertConverged({ primaryDb: extra, replicaDb: join(dir, 'r', 'extra', 'db.sqlite') });

    // Remove on the replica first, then delete on the primary.
    expect((await call(replica, 'DELETE', '/v1/namespaces/extra')).status).toBe(200);
    expect((await call(replica, 'DELETE', '/v1/namespaces/extra')).status).toBe(404);
    expect((await call(primary, 'DELETE', '/v1/namespaces/extra')).status).toBe(200);
    expect((await primary.get('/v1/namespaces/extra/head')).status).toBe(404);
    expect(existsSync(join(dir, 'p', 'extra'))).toBe(false);
    expect(existsSync(extra)).toBe(true);
    await writer.succeeded();
    await waitForCatchUp(primary, replica, 'app', app);
    await assertConverged({ primaryDb: app, replicaDb: join(dir, 'r', 'app', 'db.sqlite') });
    expect((await primary.get('/v1/namespaces/app/head')).body['generation']).toBe(appGeneration);

    // Runtime changes are remembered: a created namespace comes back after a restart, a deleted one does not.
    expect((await call(primary, 'POST', '/v1/namespaces', { name: 'third', path: join(dir, 'third.db') })).status).toBe(201);
    await primary.child.terminate();
    primary = await startPrimaryProcess(pOpts);
    expect((await primary.get('/v1/namespaces/third/head')).status).toBe(200);
    expect((await primary.get('/v1/namespaces/extra/head')).status).toBe(404);
    await waitForCatchUp(primary, replica, 'app', app);
  });
});
