/**
 * The primary's blob endpoints on a real walwire-primary process: PUT/GET
 * byte-exact with a ~3 MB body, Range (206 and 416), HEAD, list, DELETE,
 * identical and conflicting re-puts; and every kind of bad upload, each
 * answered with its status and stable code, after which the blob directory
 * holds only committed blobs (never a temp file) and the daemon still
 * stores and serves a good blob. The log holds exactly one BLOB_PUT per
 * successful put and one BLOB_DELETE per delete.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type DaemonProcess, httpCall, makeTempDir, readPrimaryLog, startPrimaryProcess, truncatedUpload, useHarness } from './harness/index.js';

useHarness();

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const MAX = 4_000_000;

async function until(test: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!test()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('blob HTTP endpoints', () => {
  it('PUT/GET byte-exact, HEAD, Range, list, re-puts, DELETE; status and metrics; one log event per success', async () => {
    const dir = makeTempDir();
    const dataDir = join(dir, 'p');
    const primary = await startPrimaryProcess({ dataDir, dbs: { app: join(dir, 'app.db') }, args: ['--max-blob-bytes', String(MAX)] });
    const port = primary.port;
    const url = '/v1/namespaces/app/blobs';
    const big = randomBytes(3 * 1024 * 1024 + 123);
    const bigSha = sha(big);

    const put = await httpCall(port, 'PUT', `${url}/big.bin`, { body: big, headers: { 'x-walwire-sha256': bigSha } });
    expect(put.status).toBe(201);
    expect(put.json).toMatchObject({ id: 'big.bin', sha256: bigSha, size: big.length, created: true });
    const putSeq = put.json['seq'] as number;
    expect((await primary.get('/v1/namespaces/app/head')).body['seq']).toBe(putSeq);

    const get = await httpCall(port, 'GET', `${url}/big.bin`);
    expect(get.status).toBe(200);
    expect(get.body.equals(big)).toBe(true);
    expect(get.headers).toMatchObject({
      'content-type': 'application/octet-stream',
      'content-length': String(big.length),
      etag: `"${bigSha}"`,
      'x-walwire-sha256': bigSha,
      'accept-ranges': 'bytes',
    });
    const head = await httpCall(port, 'HEAD', `${url}/big.bin`);
    expect(head.status).toBe(200);
    expect(head.body.length).toBe(0);
    expect(head.headers).toMatchObject({ 'content-length': String(big.length), etag: `"${bigSha}"`, 'x-walwire-sha256': bigSha, 'accept-ranges': 'bytes' });
    expect((await httpCall(port, 'GET', `${url}/big.bin`, { headers: { 'if-none-match': `"${bigSha}"` } })).status).toBe(304);

    const size = big.length;
    for (const [range, start, end] of [
      ['bytes=0-99', 0, 99],
      ['bytes=1000000-', 1_000_000, size - 1],
      ['bytes=-500', size - 500, size - 1],
      ['bytes=100-99999999', 100, size - 1],
      ['bytes=-99999999', 0, size - 1],
      [`bytes=${size - 1}-${size - 1}`, size - 1, size - 1],
    ] as const) {
      const r = await httpCall(port, 'GET', `${url}/big.bin`, { headers: { range } });
      expect(r.status, range).toBe(206);
      expect(r.headers['content-range'], range).toBe(`bytes ${start}-${end}/${size}`);
      expect(r.headers['content-length'], range).toBe(String(end - start + 1));
      expect(r.body.equals(big.subarray(start, end + 1)), range).toBe(true);
    }
    for (const range of [`bytes=${size}-`, 'bytes=-0', `bytes=${size + 10}-${size + 20}`]) {
      const r = await httpCall(port, 'GET', `${url}/big.bin`, { headers: { range } });
      expect(r.status, range).toBe(416);
      expect(r.json['code'], range).toBe('WALWIRE_ERR_RANGE_NOT_SATISFIABLE');
      expect(r.headers['content-range'], range).toBe(`bytes */${size}`);
    }
    // Several ranges, or a malformed one, are ignored: the whole blob.
    for (const range of ['bytes=0-1,5-6', 'bytes=5-1', 'items=0-1']) {
      const r = await httpCall(port, 'GET', `${url}/big.bin`, { headers: { range } });
      expect(r.status, range).toBe(200);
      expect(r.body.length, range).toBe(size);
    }

    // Identical content again: 200, created false, and a new event.
    const again = await httpCall(port, 'PUT', `${url}/big.bin`, { body: big });
    expect(again.status).toBe(200);
    expect(again.json).toMatchObject({ id: 'big.bin', sha256: bigSha, created: false, seq: putSeq + 1 });
    const conflict = await httpCall(port, 'PUT', `${url}/big.bin`, { body: randomBytes(10) });
    expect(conflict.status).toBe(409);
    expect(conflict.json['code']).toBe('WALWIRE_ERR_BLOB_EXISTS');

    // POST: the id is the content hash.
    const small = randomBytes(777);
    const posted = await httpCall(port, 'POST', url, { body: small });
    expect(posted.status).toBe(201);
    expect(posted.json).toMatchObject({ id: sha(small), sha256: sha(small), size: 777, created: true });
    expect((await httpCall(port, 'GET', `${url}/${sha(small)}`)).body.equals(small)).toBe(true);
    // A chunked upload (no content-length) and an empty blob.
    const parts = [randomBytes(1000), randomBytes(2000)];
    const chunked = await httpCall(port, 'PUT', `${url}/chunked`, { body: parts });
    expect(chunked.json).toMatchObject({ size: 3000, sha256: sha(Buffer.concat(parts)) });
    expect((await httpCall(port, 'PUT', `${url}/empty`, { body: new Uint8Array(0) })).json).toMatchObject({ size: 0 });
    const emptyGet = await httpCall(port, 'GET', `${url}/empty`);
    expect([emptyGet.status, emptyGet.body.length]).toEqual([200, 0]);

    const list = await httpCall(port, 'GET', url);
    expect(list.status).toBe(200);
    expect(list.json).toEqual({
      blobs: [
        { id: sha(small), sha256: sha(small), size: 777 },
        { id: 'big.bin', sha256: bigSha, size },
        { id: 'chunked', sha256: sha(Buffer.concat(parts)), size: 3000 },
        { id: 'empty', sha256: sha(new Uint8Array(0)), size: 0 },
      ].sort((a, b) => (a.id < b.id ? -1 : 1)),
      count: 4,
      bytes: size + 777 + 3000,
    });
    const status = (await primary.get('/v1/status')).body;
    expect((status['namespaces'] as { blobs: unknown }[])[0]!.blobs).toEqual({ count: 4, bytes: size + 777 + 3000 });

    const del = await httpCall(port, 'DELETE', `${url}/big.bin`);
    expect(del.status).toBe(200);
    expect(del.json).toEqual({ id: 'big.bin', seq: (chunked.json['seq'] as number) + 2 });
    for (const method of ['GET', 'DELETE']) {
      const gone = await httpCall(port, method, `${url}/big.bin`);
      expect(gone.status, method).toBe(404);
      expect(gone.json['code'], method).toBe('WALWIRE_ERR_NOT_FOUND');
    }
    for (const [method, path] of [
      ['GET', '/v1/namespaces/nope/blobs/x'],
      ['PUT', '/v1/namespaces/nope/blobs/x'],
      ['GET', '/v1/namespaces/nope/blobs'],
      ['DELETE', '/v1/namespaces/nope/blobs/x'],
    ] as const) {
      const r = await httpCall(port, method, path, method === 'PUT' ? { body: Buffer.from('x') } : {});
      expect(r.status, `${method} ${path}`).toBe(404);
      expect(r.json['code'], `${method} ${path}`).toBe('WALWIRE_ERR_UNKNOWN_NAMESPACE');
    }
    const unauthorized = await httpCall(port, 'GET', `${url}/empty`, { token: 'wrong' });
    expect([unauthorized.status, unauthorized.json['code']]).toEqual([401, 'WALWIRE_ERR_UNAUTHORIZED']);

    const metrics = (await httpCall(port, 'GET', '/metrics')).body.toString('utf8');
    expect(metrics).toContain('walwire_primary_blobs_total{ns="app"} 3');
    expect(metrics).toContain(`walwire_primary_blob_bytes{ns="app"} ${777 + 3000}`);
    expect(metrics).toContain('walwire_primary_blob_puts_total{ns="app"} 5');
    expect(metrics).toContain('walwire_primary_blob_deletes_total{ns="app"} 1');
    expect(metrics).toContain('walwire_primary_blob_failures_total{ns="app",code="WALWIRE_ERR_BLOB_EXISTS"} 1');
    expect(metrics).toContain('walwire_primary_blob_failures_total{ns="app",code="WALWIRE_ERR_NOT_FOUND"} 1');

    await primary.child.terminate();
    const log = await readPrimaryLog(dataDir, 'app');
    const events = log.records.flatMap((r) => (r.kind === 'txn' ? [] : [[r.kind, r.blobId, r.seq]]));
    expect(events).toEqual([
      ['blob-put', 'big.bin', putSeq],
      ['blob-put', 'big.bin', putSeq + 1],
      ['blob-put', sha(small), putSeq + 2],
      ['blob-put', 'chunked', putSeq + 3],
      ['blob-put', 'empty', putSeq + 4],
      ['blob-delete', 'big.bin', putSeq + 5],
    ]);
  });

  it('bad uploads get their status and code, leave no temp file, and the daemon keeps serving', async () => {
    const dir = makeTempDir();
    const dataDir = join(dir, 'p');
    const primary: DaemonProcess = await startPrimaryProcess({ dataDir, dbs: { app: join(dir, 'app.db') }, args: ['--max-blob-bytes', String(MAX)] });
    const port = primary.port;
    const url = '/v1/namespaces/app/blobs';
    const blobDir = join(dataDir, 'app', 'blobs');
    /** Files the blob directory must hold: exactly the committed blobs. */
    const committed = new Set<string>();
    const goodPuts: string[] = [];
    let n = 0;
    const assertCleanAndServing = async (what: string): Promise<void> => {
      // The server may still be discarding the temp of a request the client gave up on.
      await until(() => readdirSync(blobDir).every((f) => committed.has(f)), `${what}: only committed blobs in ${blobDir}, found ${readdirSync(blobDir).join(', ')}`);
      expect(readdirSync(blobDir).sort(), what).toEqual([...committed].sort());
      const id = `good-${++n}`;
      const body = randomBytes(50_000);
      const put = await httpCall(port, 'PUT', `${url}/${id}`, { body });
      expect(put.status, `${what}: good put after`).toBe(201);
      committed.add(`${id}~${sha(body)}`);
      goodPuts.push(id);
      expect((await httpCall(port, 'GET', `${url}/${id}`)).body.equals(body), `${what}: good get after`).toBe(true);
    };
    await assertCleanAndServing('start');

    const body = randomBytes(200_000);
    const wrong = sha(Buffer.from('something else'));
    const cases: [string, () => Promise<{ status: number | null; json: Record<string, unknown> }>, number, string][] = [
      ['wrong x-walwire-sha256', () => httpCall(port, 'PUT', `${url}/a`, { body, headers: { 'x-walwire-sha256': wrong } }), 400, 'WALWIRE_ERR_BLOB_CHECKSUM'],
      ['wrong content-addressed id', () => httpCall(port, 'PUT', `${url}/${wrong}`, { body }), 400, 'WALWIRE_ERR_BLOB_CHECKSUM'],
      ['POST with a wrong sha256', () => httpCall(port, 'POST', url, { body, headers: { 'x-walwire-sha256': wrong } }), 400, 'WALWIRE_ERR_BLOB_CHECKSUM'],
      ['malformed x-walwire-sha256', () => httpCall(port, 'PUT', `${url}/a`, { body, headers: { 'x-walwire-sha256': 'xyz' } }), 400, 'WALWIRE_ERR_INVALID_OPTION'],
      ['truncated upload', () => truncatedUpload(port, `${url}/t`, body.length, body.subarray(0, 100_000), 'end'), 400, 'WALWIRE_ERR_BLOB_INCOMPLETE'],
      ['id ..', () => httpCall(port, 'PUT', `${url}/..`, { body }), 400, 'WALWIRE_ERR_INVALID_BLOB_ID'],
      ['id %2E%2E', () => httpCall(port, 'PUT', `${url}/%2E%2E`, { body }), 400, 'WALWIRE_ERR_INVALID_BLOB_ID'],
      ['id a%2Fb', () => httpCall(port, 'PUT', `${url}/a%2Fb`, { body }), 400, 'WALWIRE_ERR_INVALID_BLOB_ID'],
      ['id .hidden', () => httpCall(port, 'PUT', `${url}/.hidden`, { body }), 400, 'WALWIRE_ERR_INVALID_BLOB_ID'],
      ['200-char id', () => httpCall(port, 'PUT', `${url}/${'x'.repeat(200)}`, { body }), 400, 'WALWIRE_ERR_INVALID_BLOB_ID'],
      ['bad percent-encoding', () => httpCall(port, 'PUT', `${url}/%zz`, { body }), 400, 'WALWIRE_ERR_INVALID_BLOB_ID'],
      ['GET of a bad id', () => httpCall(port, 'GET', `${url}/a%2Fb`), 400, 'WALWIRE_ERR_INVALID_BLOB_ID'],
      ['oversize by content-length', () => httpCall(port, 'PUT', `${url}/big`, { body: randomBytes(MAX + 1) }), 413, 'WALWIRE_ERR_BLOB_TOO_LARGE'],
      [
        'oversize by streamed count (chunked)',
        () => httpCall(port, 'PUT', `${url}/big`, { body: Array.from({ length: 70 }, () => randomBytes(64 * 1024)) }),
        413,
        'WALWIRE_ERR_BLOB_TOO_LARGE',
      ],
      ['a small truncated upload', () => truncatedUpload(port, `${url}/t2`, 1000, randomBytes(500), 'end'), 400, 'WALWIRE_ERR_BLOB_INCOMPLETE'],
    ];
    for (const [what, send, status, code] of cases) {
      const reply = await send();
      expect(reply.status, what).toBe(status);
      expect(reply.json['code'], what).toBe(code);
      await assertCleanAndServing(what);
    }

    // A client that vanishes mid-upload: no answer, no temp, no crash.
    for (let i = 0; i < 3; i++) {
      await truncatedUpload(port, `${url}/aborted`, body.length, body.subarray(0, 50_000 * (i + 1)), 'abort');
      await assertCleanAndServing(`aborted upload ${i}`);
    }
    // Several bad and good uploads at once do not disturb each other.
    const mixed = await Promise.all([
      httpCall(port, 'PUT', `${url}/c1`, { body, headers: { 'x-walwire-sha256': wrong } }),
      truncatedUpload(port, `${url}/c2`, body.length, body.subarray(0, 1000), 'abort'),
      httpCall(port, 'PUT', `${url}/c3`, { body }),
      httpCall(port, 'PUT', `${url}/big`, { body: randomBytes(MAX + 1) }),
    ]);
    expect(mixed.map((r) => r.status)).toEqual([400, null, 201, 413]);
    committed.add(`c3~${sha(body)}`);
    goodPuts.push('c3');
    await assertCleanAndServing('concurrent');
    expect(primary.child.process.exitCode).toBeNull();

    await primary.child.terminate();
    const log = await readPrimaryLog(dataDir, 'app');
    const puts = log.records.flatMap((r) => (r.kind === 'blob-put' ? [r.blobId] : []));
    expect(puts.sort()).toEqual(goodPuts.sort());
    expect(log.records.some((r) => r.kind === 'blob-delete')).toBe(false);
  });
});
