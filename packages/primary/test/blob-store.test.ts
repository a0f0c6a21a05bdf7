/**
 * BlobStore in-process: put/get/delete, ids, sha256 verification, identical
 * and conflicting re-puts, size limits (declared and streamed), incomplete
 * bodies, the event order against the log, per-id serialization, and the
 * Primary library methods on top. After every failure the directory holds
 * only committed blobs (no temp file).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlobStore, Primary, type BlobLog, type RecordEvent } from '@walwire/primary';
import { blobFileName } from '@walwire/runtime';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'walwire-blobs-'));
  dirs.push(dir);
  return dir;
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

type Event = { kind: 'put'; blobId: string; size: number; sha256: string } | { kind: 'delete'; blobId: string };

/** A log that records events in memory; `failNext` makes the next append throw. */
class FakeLog implements BlobLog {
  readonly events: Event[] = [];
  failNext = false;

  async appendBlobPut(event: { blobId: string; size: number; sha256: string }): Promise<{ seq: number }> {
    await new Promise((r) => setTimeout(r, 1));
    if (this.failNext) {
      this.failNext = false;
      throw new Error('log append failed');
    }
    this.events.push({ kind: 'put', ...event });
    return { seq: this.events.length };
  }

  async appendBlobDelete(blobId: string): Promise<{ seq: number }> {
    await new Promise((r) => setTimeout(r, 1));
    this.events.push({ kind: 'delete', blobId });
    return { seq: this.events.length };
  }
}

function open(maxBlobBytes = 1 << 20): { store: BlobStore; log: FakeLog; dir: string } {
  const dir = join(tempDir(), 'blobs');
  const log = new FakeLog();
  return { store: new BlobStore({ dir, maxBlobBytes, log }), log, dir };
}

/** A body in chunks of `chunk` bytes; `read` counts the chunks consumed. */
function chunked(bytes: Uint8Array, chunk = 1000, counter?: { read: number }): AsyncIterable<Uint8Array> {
  return (async function* () {
    for (let at = 0; at < bytes.length; at += chunk) {
      if (counter) counter.read++;
      await new Promise((r) => setImmediate(r));
      yield bytes.subarray(at, at + chunk);
    }
  })();
}

/** Only committed `<id>~<sha256>` files: no temp file anywhere. */
function files(dir: string): string[] {
  return readdirSync(dir).sort();
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
  throw new Error('expected a rejection');
}

describe('BlobStore', () => {
  it('puts, gets, lists and deletes; events follow the files', async () => {
    const { store, log, dir } = open();
    const a = randomBytes(5000);
    const r = await store.put(chunked(a), { id: 'photo-1.jpg', size: a.length });
    expect(r).toEqual({ id: 'photo-1.jpg', sha256: sha(a), size: 5000, seq: 1, created: true });
    const info = store.get('photo-1.jpg')!;
    expect(info).toMatchObject({ id: 'photo-1.jpg', sha256: sha(a), size: 5000 });
    expect(readFileSync(info.path).equals(a)).toBe(true);
    expect(files(dir)).toEqual([blobFileName('photo-1.jpg', sha(a))]);

    // No id: the id is the content hash.
    const b = randomBytes(10);
    const rb = await store.put(b);
    expect(rb.id).toBe(sha(b));
    expect(store.list().map((x) => x.id)).toEqual([rb.id, 'photo-1.jpg'].sort());
    expect(store.status()).toMatchObject({ count: 2, bytes: 5010, puts: 2, deletes: 0 });

    expect(await store.delete('photo-1.jpg')).toEqual({ id: 'photo-1.jpg', seq: 3 });
    expect(store.get('photo-1.jpg')).toBeUndefined();
    expect(files(dir)).toEqual([blobFileName(rb.id, rb.sha256)]);
    expect(log.events).toEqual([
      { kind: 'put', blobId: 'photo-1.jpg', size: 5000, sha256: sha(a) },
      { kind: 'put', blobId: rb.id, size: 10, sha256: sha(b) },
      { kind: 'delete', blobId: 'photo-1.jpg' },
    ]);
    expect(await codeOf(store.delete('photo-1.jpg'))).toBe('WALWIRE_ERR_NOT_FOUND');
    expect(store.status().failures['WALWIRE_ERR_NOT_FOUND']).toBe(1);

    // An empty blob is a blob.
    const empty = await store.put(new Uint8Array(0), { id: 'empty' });
    expect(empty).toMatchObject({ size: 0, sha256: sha(new Uint8Array(0)), created: true });

    // Reopening indexes what is on disk.
    const again = new BlobStore({ dir, maxBlobBytes: 1 << 20, log });
    expect(again.list().map((x) => [x.id, x.size])).toEqual([[rb.id, 10], ['empty', 0]].sort());
  });

  it('refuses invalid ids without creating anything', async () => {
    const { store, log, dir } = open();
    for (const id of ['..', '.', '.hidden', 'a/b', 'a\\b', '', 'x'.repeat(129), 'a b', 'a~b', 'é']) {
      expect(await codeOf(store.put(Buffer.from('x'), { id })), id).toBe('WALWIRE_ERR_INVALID_BLOB_ID');
      expect(await codeOf(store.delete(id)), id).toBe('WALWIRE_ERR_INVALID_BLOB_ID');
      expect(() => store.get(id)).toThrow(expect.objectContaining({ code: 'WALWIRE_ERR_INVALID_BLOB_ID' }));
    }
    expect(await store.put(Buffer.from('x'), { id: 'x'.repeat(128) })).toMatchObject({ created: true });
    expect(files(dir)).toHaveLength(1);
    expect(log.events).toHaveLength(1);
  });

  it('verifies sha256: the option, and a content-addressed id', async () => {
    const { store, log, dir } = open();
    const a = randomBytes(3000);
    const wrong = sha(Buffer.from('other'));
    expect(await codeOf(store.put(chunked(a), { id: 'a', sha256: wrong }))).toBe('WALWIRE_ERR_BLOB_CHECKSUM');
    expect(await codeOf(store.put(chunked(a), { id: wrong }))).toBe('WALWIRE_ERR_BLOB_CHECKSUM');
    expect(await codeOf(store.put(chunked(a), { sha256: wrong }))).toBe('WALWIRE_ERR_BLOB_CHECKSUM');
    expect(await codeOf(store.put(chunked(a), { id: sha(a), sha256: wrong }))).toBe('WALWIRE_ERR_BLOB_CHECKSUM');
    expect(await codeOf(store.put(chunked(a), { id: 'a', sha256: 'nothex' }))).toBe('WALWIRE_ERR_INVALID_OPTION');
    expect(files(dir)).toEqual([]);
    expect(log.events).toEqual([]);
    // Right hashes pass; hex case does not matter in the option.
    expect(await store.put(chunked(a), { id: 'a', sha256: sha(a).toUpperCase() })).toMatchObject({ id: 'a', created: true });
    expect(await store.put(chunked(a), { id: sha(a) })).toMatchObject({ id: sha(a), created: true });
    // An id that is 64 hex digits but upper case is a plain name, not a hash.
    expect(await store.put(chunked(a), { id: wrong.toUpperCase() })).toMatchObject({ created: true });
    expect(store.status().failures['WALWIRE_ERR_BLOB_CHECKSUM']).toBe(4);
  });

  it('an identical re-put appends the event again (created: false); other content is BLOB_EXISTS', async () => {
    const { store, log, dir } = open();
    const a = randomBytes(2000);
    await store.put(chunked(a), { id: 'k' });
    expect(await store.put(chunked(a), { id: 'k' })).toEqual({ id: 'k', sha256: sha(a), size: 2000, seq: 2, created: false });
    expect(await codeOf(store.put(randomBytes(2000), { id: 'k' }))).toBe('WALWIRE_ERR_BLOB_EXISTS');
    expect(files(dir)).toEqual([blobFileName('k', sha(a))]);
    expect(log.events.map((e) => e.kind)).toEqual(['put', 'put']);
    // Delete first, then other content is fine.
    await store.delete('k');
    const b = randomBytes(10);
    expect(await store.put(b, { id: 'k' })).toMatchObject({ created: true, sha256: sha(b) });
    expect(files(dir)).toEqual([blobFileName('k', sha(b))]);
  });

  it('refuses oversize blobs: a declared size before reading, a streamed count as soon as it passes', async () => {
    const { store, log, dir } = open(10_000);
    const counter = { read: 0 };
    expect(await codeOf(store.put(chunked(randomBytes(20_000), 1000, counter), { id: 'big', size: 20_000 }))).toBe('WALWIRE_ERR_BLOB_TOO_LARGE');
    expect(counter.read).toBe(0);
    const streamed = { read: 0 };
    expect(await codeOf(store.put(chunked(randomBytes(50_000), 1000, streamed), { id: 'big' }))).toBe('WALWIRE_ERR_BLOB_TOO_LARGE');
    expect(streamed.read).toBe(11);
    expect(files(dir)).toEqual([]);
    // Exactly the limit is fine.
    expect(await store.put(chunked(randomBytes(10_000)), { id: 'max' })).toMatchObject({ size: 10_000 });
    expect(log.events).toHaveLength(1);
    expect(store.status().failures['WALWIRE_ERR_BLOB_TOO_LARGE']).toBe(2);
  });

  it('a body that does not match its declared size, or fails, is BLOB_INCOMPLETE and leaves nothing', async () => {
    const { store, log, dir } = open();
    expect(await codeOf(store.put(chunked(randomBytes(500)), { id: 'short', size: 1000 }))).toBe('WALWIRE_ERR_BLOB_INCOMPLETE');
    expect(await codeOf(store.put(chunked(randomBytes(1500)), { id: 'long', size: 1000 }))).toBe('WALWIRE_ERR_BLOB_INCOMPLETE');
    const failing = (async function* () {
      yield randomBytes(100);
      throw Object.assign(new Error('aborted'), { code: 'ECONNRESET' });
    })();
    expect(await codeOf(store.put(failing, { id: 'aborted' }))).toBe('WALWIRE_ERR_BLOB_INCOMPLETE');
    expect(await codeOf(store.put(randomBytes(10), { id: 'neg', size: -1 }))).toBe('WALWIRE_ERR_INVALID_OPTION');
    expect(files(dir)).toEqual([]);
    expect(log.events).toEqual([]);
  });

  it('a failed log append after the rename is healed by a retried put', async () => {
    const { store, log, dir } = open();
    const a = randomBytes(1000);
    log.failNext = true;
    expect(await codeOf(store.put(a, { id: 'x' }))).toBe('Error: log append failed');
    expect(store.status().failures['WALWIRE_ERR_INTERNAL']).toBe(1);
    // The file is committed (the window the kill -9 test covers), with no event.
    expect(files(dir)).toEqual([blobFileName('x', sha(a))]);
    expect(log.events).toEqual([]);
    expect(await store.put(a, { id: 'x' })).toMatchObject({ created: false, seq: 1 });
    expect(log.events).toEqual([{ kind: 'put', blobId: 'x', size: 1000, sha256: sha(a) }]);
  });

  it('serializes puts and deletes of one id', async () => {
    const { store, log, dir } = open();
    const bodies = Array.from({ length: 6 }, () => randomBytes(3000));
    const results = await Promise.allSettled(bodies.map((b) => store.put(chunked(b, 500), { id: 'same' })));
    const ok = results.filter((r) => r.status === 'fulfilled');
    expect(ok).toHaveLength(1);
    expect(results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason.code)).toEqual(Array(5).fill('WALWIRE_ERR_BLOB_EXISTS'));
    expect(files(dir)).toHaveLength(1);
    // put, delete, put of the same id issued together land in order.
    const c = randomBytes(100);
    const [del, put] = await Promise.allSettled([store.delete('same'), store.put(c, { id: 'same' })]);
    expect(del.status).toBe('fulfilled');
    expect(put.status).toBe('fulfilled');
    expect(log.events.map((e) => e.kind)).toEqual(['put', 'delete', 'put']);
    expect(store.get('same')?.sha256).toBe(sha(c));
  });

  it('is closed for new work after close()', async () => {
    const { store } = open();
    await store.put(Buffer.from('a'), { id: 'a' });
    await store.close();
    expect(await codeOf(store.put(Buffer.from('b'), { id: 'b' }))).toBe('WALWIRE_ERR_CLOSED');
    expect(await codeOf(store.delete('a'))).toBe('WALWIRE_ERR_CLOSED');
  });
});

describe('Primary blob methods', () => {
  it('putBlob/getBlob/deleteBlob append blob events to the namespace log; status shows the store', async () => {
    const dir = tempDir();
    const primary = new Primary({ dataDir: join(dir, 'data'), namespaces: { app: { path: join(dir, 'app.db') } }, maxBlobBytes: 4096 });
    const records: RecordEvent[] = [];
    primary.on('record', (e) => records.push(e));
    await primary.start();
    try {
      const a = randomBytes(1000);
      const put = await primary.putBlob('app', a, { id: 'doc' });
      expect(put).toMatchObject({ id: 'doc', sha256: sha(a), size: 1000, created: true });
      expect(primary.head('app').seq).toBe(put.seq);
      const info = primary.getBlob('app', 'doc')!;
      expect(info.path).toBe(join(dir, 'data', 'app', 'blobs', blobFileName('doc', sha(a))));
      expect(readFileSync(info.path).equals(a)).toBe(true);
      expect(primary.status().namespaces[0]!.blobs).toEqual({ count: 1, bytes: 1000 });
      expect(primary.blobs('app').status().puts).toBe(1);
      expect(await codeOf(primary.putBlob('app', randomBytes(5000)))).toBe('WALWIRE_ERR_BLOB_TOO_LARGE');
      expect(await codeOf(primary.putBlob('nope', a))).toBe('WALWIRE_ERR_UNKNOWN_NAMESPACE');
      const del = await primary.deleteBlob('app', 'doc');
      expect(del).toEqual({ id: 'doc', seq: put.seq + 1 });
      expect(primary.getBlob('app', 'doc')).toBeUndefined();
      const events = records.filter((r) => r.record.kind !== 'txn').map((r) => [r.record.kind, r.record.seq]);
      expect(events).toEqual([
        ['blob-put', put.seq],
        ['blob-delete', del.seq],
      ]);
      const logged = [];
      for await (const r of primary.read('app', put.seq)) logged.push(r);
      expect(logged).toMatchObject([
        { kind: 'blob-put', blobId: 'doc', size: 1000, sha256: sha(a) },
        { kind: 'blob-delete', blobId: 'doc' },
      ]);
    } finally {
      await primary.stop();
    }
  });
});
