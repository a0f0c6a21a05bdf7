/**
 * kill -9 inside a blob put or delete on a real walwire-primary process
 * (failpoints), then restart: the blob is either absent or served whole
 * (never partial, never a temp file left), and the client's retry ends with
 * exactly the blob and one event per retry that succeeded in the log.
 *
 * - `primary.blob.before-commit`: temp file written and verified, not renamed.
 * - `primary.blob.after-rename`: renamed and directory synced, no BLOB_PUT yet.
 * - `primary.blob.after-delete-append`: BLOB_DELETE durable, file not removed.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { httpCall, makeTempDir, readPrimaryLog, startPrimaryProcess, useHarness } from './harness/index.js';

useHarness();

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const URL_BLOBS = '/v1/namespaces/app/blobs';

describe('blob put and delete survive kill -9', () => {
  it.each([
    ['primary.blob.before-commit', false],
    ['primary.blob.after-rename', true],
  ] as const)('killed at %s: absent or whole after restart; a retried PUT leaves the blob and one BLOB_PUT', async (failpoint, survives) => {
    const dir = makeTempDir();
    const dataDir = join(dir, 'p');
    const dbs = { app: join(dir, 'app.db') };
    const blobDir = join(dataDir, 'app', 'blobs');
    const body = randomBytes(1024 * 1024 + 7);
    const file = `doc~${sha(body)}`;

    const doomed = await startPrimaryProcess({ dataDir, dbs, env: { WALWIRE_FAILPOINTS: `${failpoint}=kill` } });
    await expect(httpCall(doomed.port, 'PUT', `${URL_BLOBS}/doc`, { body })).rejects.toThrow();
    expect((await doomed.child.exited).signal).toBe('SIGKILL');

    // On disk, before any restart: the temp (before the rename) or the whole blob, nothing else.
    const left = readdirSync(blobDir);
    if (survives) expect(left).toEqual([file]);
    else expect(left).toEqual([expect.stringMatching(/^\.doc\.[0-9a-f]+\.tmp$/)]);
    if (survives) expect(sha(readFileSync(join(blobDir, file)))).toBe(sha(body));

    const primary = await startPrimaryProcess({ dataDir, dbs });
    const get = await httpCall(primary.port, 'GET', `${URL_BLOBS}/doc`);
    if (survives) {
      expect(get.status).toBe(200);
      expect(get.body.equals(body)).toBe(true);
    } else {
      expect([get.status, get.json['code']]).toEqual([404, 'WALWIRE_ERR_NOT_FOUND']);
    }
    // The stale temp is gone at start; the blob (if any) is whole.
    expect(readdirSync(blobDir)).toEqual(survives ? [file] : []);
    // No event was logged for the killed put.
    expect((await primary.get('/v1/namespaces/app/head')).body['seq']).toBe(0);

    // The client retries.
    const retry = await httpCall(primary.port, 'PUT', `${URL_BLOBS}/doc`, { body });
    expect(retry.status).toBe(survives ? 200 : 201);
    expect(retry.json).toMatchObject({ id: 'doc', sha256: sha(body), size: body.length, seq: 1, created: !survives });
    expect((await httpCall(primary.port, 'GET', `${URL_BLOBS}/doc`)).body.equals(body)).toBe(true);
    expect(readdirSync(blobDir)).toEqual([file]);

    await primary.child.terminate();
    const log = await readPrimaryLog(dataDir, 'app');
    expect(log.records.map((r) => (r.kind === 'txn' ? ['txn'] : [r.kind, r.blobId, r.kind === 'blob-put' ? r.sha256 : '']))).toEqual([['blob-put', 'doc', sha(body)]]);
  });

  it('killed between BLOB_DELETE and the unlink: still served after restart; a retried DELETE removes it', async () => {
    const dir = makeTempDir();
    const dataDir = join(dir, 'p');
    const dbs = { app: join(dir, 'app.db') };
    const body = randomBytes(300_000);
    const doomed = await startPrimaryProcess({ dataDir, dbs, env: { WALWIRE_FAILPOINTS: 'primary.blob.after-delete-append=kill' } });
    expect((await httpCall(doomed.port, 'PUT', `${URL_BLOBS}/doc`, { body })).status).toBe(201);
    await expect(httpCall(doomed.port, 'DELETE', `${URL_BLOBS}/doc`)).rejects.toThrow();
    expect((await doomed.child.exited).signal).toBe('SIGKILL');

    const primary = await startPrimaryProcess({ dataDir, dbs });
    const get = await httpCall(primary.port, 'GET', `${URL_BLOBS}/doc`);
    expect(get.status).toBe(200);
    expect(get.body.equals(body)).toBe(true);
    const retry = await httpCall(primary.port, 'DELETE', `${URL_BLOBS}/doc`);
    expect(retry.json).toEqual({ id: 'doc', seq: 3 });
    expect((await httpCall(primary.port, 'GET', `${URL_BLOBS}/doc`)).status).toBe(404);
    expect(readdirSync(join(dataDir, 'app', 'blobs'))).toEqual([]);

    await primary.child.terminate();
    const log = await readPrimaryLog(dataDir, 'app');
    expect(log.records.map((r) => (r.kind === 'txn' ? 'txn' : r.kind))).toEqual(['blob-put', 'blob-delete', 'blob-delete']);
  });
});
