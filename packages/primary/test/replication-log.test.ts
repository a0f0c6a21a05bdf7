import { describe, expect, it, afterEach } from 'vitest';
import { mkdtempSync, readdirSync, rmSync, statSync, truncateSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ReplicationLog, type LogRecord, type WalPosition } from '@walwire/primary';
import { hasCode } from '@walwire/protocol';
import { armFailpoint, disarmAllFailpoints, silentLogger } from '@walwire/runtime';

const dirs: string[] = [];
afterEach(() => {
  disarmAllFailpoints();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'walwire-log-'));
  dirs.push(d);
  return d;
}

const PAGE = 1024;
const wal = (offset: number): WalPosition => ({ salt1: 7, salt2: 9, offset, chain: [offset, offset + 1] });
const page = (fill: number): Uint8Array => new Uint8Array(PAGE).fill(fill);
const checksum = (n: number): string => n.toString(16).padStart(16, '0');

async function openLog(dir: string, segmentBytes = 1024 * 1024): Promise<ReplicationLog> {
  return ReplicationLog.open({ dir, segmentBytes, logger: silentLogger() });
}

async function startGen(log: ReplicationLog, generation = 'a'.repeat(32)): Promise<void> {
  await log.startGeneration({ generation, checksum: checksum(0), commitSize: 1, pageSize: PAGE, wal: wal(32), reason: 'test' });
}

function appendTxn(log: ReplicationLog, n: number): Promise<LogRecord> {
  return log.appendTxn({ commitSize: n + 1, checksum: checksum(n), commitTime: 1000 + n, pages: [{ pgno: 1, data: page(n) }, { pgno: n + 1, data: page(n + 1) }] }, 1, wal(32 + n * 100));
}

function segments(dir: string): string[] {
  return readdirSync(dir).filter((n) => n.endsWith('.wwlog')).sort();
}

describe('ReplicationLog', () => {
  it('appends with group commit, assigns consecutive seqs and reads them back exactly', async () => {
    const dir = tempDir();
    const log = await openLog(dir);
    await startGen(log);
    const appended = await Promise.all(Array.from({ length: 50 }, (_, i) => appendTxn(log, i + 1)));
    expect(appended.map((r) => r.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect(log.head?.seq).toBe(50);
    const blob = await log.appendBlobPut({ blobId: 'photo-1', size: 12, sha256: 'cd'.repeat(32) });
    const del = await log.appendBlobDelete('photo-1');
    expect([blob.seq, del.seq]).toEqual([51, 52]);
    expect(log.head?.checksum).toBe(checksum(50));
    const read = await log.readRange(10, 12);
    expect(read.map((r) => r.seq)).toEqual([10, 11, 12]);
    const r10 = read[0]!;
    expect(r10.kind).toBe('txn');
    if (r10.kind !== 'txn') throw new Error('kind');
    expect(r10.txn.commitSize).toBe(11);
    expect(r10.txn.checksum).toBe(checksum(10));
    expect(r10.txn.commitTime).toBe(1010);
    expect(r10.txn.pages.map((p) => p.pgno)).toEqual([1, 11]);
    expect(Buffer.from(r10.txn.pages[1]!.data).equals(Buffer.from(page(11)))).toBe(true);
    const blobs = await log.readRange(51);
    expect(blobs).toEqual([
      { kind: 'blob-put', seq: 51, generation: 'a'.repeat(32), blobId: 'photo-1', size: 12, sha256: 'cd'.repeat(32), time: blob.time, checksum: checksum(50), commitSize: 51 },
      { kind: 'blob-delete', seq: 52, generation: 'a'.repeat(32), blobId: 'photo-1', time: del.time, checksum: checksum(50), commitSize: 51 },
    ]);
    await log.close();
    const again = await openLog(dir);
    expect(again.recovery.unclean).toBe(false);
    expect(again.head?.seq).toBe(52);
    expect(again.generation).toBe('a'.repeat(32));
    expect((await again.readRange(1)).length).toBe(52);
    await again.close();
  });

  it('a blob event appended while the txn before it is being flushed carries that txn\'s state (regression: stale checksum made replicas diverge)', async () => {
    const log = await openLog(tempDir());
    await startGen(log);
    await appendTxn(log, 1);
    // Txn 2 leaves #pending for the flush at once; the blob event is appended during that flush.
    const txn = appendTxn(log, 2);
    await Promise.resolve();
    const blob = await log.appendBlobPut({ blobId: 'b', size: 1, sha256: 'cd'.repeat(32) });
    await txn;
    expect(blob.seq).toBe(3);
    expect([blob.checksum, blob.commitSize]).toEqual([checksum(2), 3]);
    const [read] = await log.readRange(3);
    expect(read).toMatchObject({ checksum: checksum(2), commitSize: 3 });
    await log.close();
  });

  it('discards a torn tail at start and never reuses a surviving seq', async () => {
    const dir = tempDir();
    const log = await openLog(dir);
    await startGen(log);
    for (let i = 1; i <= 5; i++) await appendTxn(log, i);
    await log.close();
    const file = join(dir, segments(dir)[0]!);
    const size = statSync(file).size;
    truncateSync(file, size - 100); // tear the last record
    writeFileSync(join(dir, '.sentinel'), 'crashed\n');
    const reopened = await openLog(dir);
    expect(reopened.recovery.unclean).toBe(true);
    expect(reopened.recovery.discardedBytes).toBeGreaterThan(0);
    expect(reopened.head?.seq).toBe(4);
    const next = await appendTxn(reopened, 5);
    expect(next.seq).toBe(5);
    expect((await reopened.readRange(1)).map((r) => r.seq)).toEqual([1, 2, 3, 4, 5]);
    await reopened.close();
  });

  it('treats a zero-filled tail as torn', async () => {
    const dir = tempDir();
    const log = await openLog(dir);
    await startGen(log);
    for (let i = 1; i <= 3; i++) await appendTxn(log, i);
    await log.close();
    const file = join(dir, segments(dir)[0]!);
    writeFileSync(file, Buffer.concat([readFileSync(file), Buffer.alloc(4096)]));
    const reopened = await openLog(dir);
    expect(reopened.head?.seq).toBe(3);
    expect(reopened.recovery.discardedBytes).toBe(4096);
    await reopened.close();
  });

  it('rolls segments, reads across them, and verifies every segment after an unclean stop', async () => {
    const dir = tempDir();
    const log = await openLog(dir, 64 * 1024);
    await startGen(log);
    for (let i = 1; i <= 100; i++) await appendTxn(log, i);
    expect(segments(dir).length).toBeGreaterThan(2);
    expect((await log.readRange(1)).map((r) => r.seq)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    await log.close();
    // Corrupt a byte in the middle of the first (sealed) segment.
    const first = join(dir, segments(dir)[0]!);
    const bytes = readFileSync(first);
    bytes[bytes.length - 10] = bytes[bytes.length - 10]! ^ 0xff;
    writeFileSync(first, bytes);
    writeFileSync(join(dir, '.sentinel'), 'crashed\n');
    const err = await openLog(dir, 64 * 1024).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(hasCode(err, 'WALWIRE_ERR_LOG_CORRUPT')).toBe(true);
  });

  it('retention drops whole old segments; reading below them needs a snapshot', async () => {
    const dir = tempDir();
    const log = await openLog(dir, 64 * 1024);
    await startGen(log);
    for (let i = 1; i <= 60; i++) await appendTxn(log, i);
    const before = segments(dir).length;
    const removed = await log.truncateBefore(40);
    expect(removed).toBeGreaterThan(0);
    expect(segments(dir).length).toBe(before - removed);
    expect(log.firstSeq).toBeLessThanOrEqual(40);
    expect(log.firstSeq).toBeGreaterThan(1);
    const err = await log.readRange(1).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(hasCode(err, 'WALWIRE_ERR_SNAPSHOT_REQUIRED')).toBe(true);
    expect((await log.readRange(40)).map((r) => r.seq)).toEqual(Array.from({ length: 21 }, (_, i) => i + 40));
    await log.close();
    const again = await openLog(dir, 64 * 1024);
    expect(again.firstSeq).toBe(log.firstSeq);
    expect(again.head?.seq).toBe(60);
    await again.close();
  });

  it('a new generation restarts seqs at 1 and removes the old generation, also when interrupted', async () => {
    const dir = tempDir();
    const log = await openLog(dir);
    await startGen(log, 'a'.repeat(32));
    for (let i = 1; i <= 3; i++) await appendTxn(log, i);
    const oldSegment = readFileSync(join(dir, segments(dir)[0]!));
    await startGen(log, 'b'.repeat(32));
    expect(log.generation).toBe('b'.repeat(32));
    expect(log.head?.seq).toBe(0);
    expect((await appendTxn(log, 1)).seq).toBe(1);
    expect(segments(dir).length).toBe(1);
    await log.close();
    // A crash after the new segment appeared but before the old one was removed.
    writeFileSync(join(dir, '0000000000.wwlog'), oldSegment);
    const reopened = await openLog(dir);
    expect(reopened.generation).toBe('b'.repeat(32));
    expect(reopened.recovery.removedSegments).toBe(1);
    expect(segments(dir).length).toBe(1);
    expect((await reopened.readRange(1)).map((r) => r.seq)).toEqual([1]);
    await reopened.close();
  });

  it('a damaged segment header is corruption, never silently dropped', async () => {
    const dir = tempDir();
    const log = await openLog(dir);
    await startGen(log);
    await appendTxn(log, 1);
    await log.close();
    const file = join(dir, segments(dir)[0]!);
    const bytes = readFileSync(file);
    bytes[20] = bytes[20]! ^ 0x01;
    writeFileSync(file, bytes);
    const err = await openLog(dir).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(hasCode(err, 'WALWIRE_ERR_LOG_CORRUPT')).toBe(true);
  });
});

describe('ReplicationLog tail cache', () => {
  const norm = (records: LogRecord[]) =>
    records.map((r) => (r.kind === 'txn' ? { ...r, txn: { ...r.txn, pages: r.txn.pages.map((p) => ({ pgno: p.pgno, data: Buffer.from(p.data).toString('hex') })) } } : r));

  it('serves the newest records from memory exactly as the segments hold them, across the cache boundary and segment rolls', async () => {
    const dir = tempDir();
    // About 2 KiB per record: the cache holds the last ~5, segments roll every ~8.
    const log = await ReplicationLog.open({ dir, segmentBytes: 16 * 1024, tailCacheBytes: 10 * 1024, logger: silentLogger() });
    await startGen(log);
    for (let i = 1; i <= 40; i++) await appendTxn(log, i);
    await log.appendBlobPut({ blobId: 'b', size: 1, sha256: 'ab'.repeat(32) });
    const cachedRead = await log.readRange(1);
    await log.close();
    // A fresh open has an empty cache: every read comes from the segments.
    const reopened = await ReplicationLog.open({ dir, segmentBytes: 16 * 1024, logger: silentLogger() });
    const diskRead = await reopened.readRange(1);
    expect(cachedRead.map((r) => r.seq)).toEqual(Array.from({ length: 41 }, (_, i) => i + 1));
    expect(norm(cachedRead)).toEqual(norm(diskRead));
    await reopened.close();
  });

  it('a record read from the cache is the reader\'s own: changing it changes no later read (the cache copies records into a reused ring)', async () => {
    const dir = tempDir();
    const log = await ReplicationLog.open({ dir, segmentBytes: 1024 * 1024, tailCacheBytes: 1024 * 1024, logger: silentLogger() });
    await startGen(log);
    await appendTxn(log, 1);
    const first = (await log.readRange(1, 1))[0]!;
    if (first.kind !== 'txn') throw new Error('kind');
    (first.txn.pages[0]!.data as Uint8Array).fill(0xee);
    const again = (await log.readRange(1, 1))[0]!;
    if (again.kind !== 'txn') throw new Error('kind');
    expect(Buffer.from(again.txn.pages[0]!.data).equals(Buffer.from(page(1)))).toBe(true);
    await log.close();
  });

  it('a new generation empties the cache: a read of the old generation never sees the new one\'s records', async () => {
    const dir = tempDir();
    const log = await ReplicationLog.open({ dir, segmentBytes: 1024 * 1024, tailCacheBytes: 1024 * 1024, logger: silentLogger() });
    await startGen(log, 'a'.repeat(32));
    for (let i = 1; i <= 3; i++) await appendTxn(log, i);
    const reader = log.read(1);
    expect((await reader.next()).value?.generation).toBe('a'.repeat(32));
    await startGen(log, 'b'.repeat(32));
    await appendTxn(log, 7);
    await appendTxn(log, 8);
    const err = await reader.next().catch((e: unknown) => e);
    expect(hasCode(err, 'WALWIRE_ERR_SNAPSHOT_REQUIRED')).toBe(true);
    const fresh = await log.readRange(1);
    expect(fresh.map((r) => [r.seq, r.generation])).toEqual([[1, 'b'.repeat(32)], [2, 'b'.repeat(32)]]);
    await log.close();
  });
  it('a blob event appended while a new generation starts lands in the new generation, whole (was: labelled with the old one, flushed into a closing segment)', async () => {
    const dir = tempDir();
    const log = await openLog(dir);
    await startGen(log, 'a'.repeat(32));
    for (let n = 1; n <= 5; n++) await appendTxn(log, n);
    const g2 = 'b'.repeat(32);
    // Not awaited: the HTTP handler of a blob PUT runs while a reset starts the generation.
    const starting = startGen(log, g2);
    const put = log.appendBlobPut({ blobId: 'late', size: 3, sha256: 'ef'.repeat(32) });
    const del = log.appendBlobDelete('late');
    await starting;
    const [p, d] = await Promise.all([put, del]);
    expect([p.generation, p.seq, d.generation, d.seq]).toEqual([g2, 1, g2, 2]);
    expect(log.failed).toBe(false);
    expect(log.generation).toBe(g2);
    const read = await log.readRange(1);
    expect(read.map((r) => [r.generation, r.seq, r.kind])).toEqual([
      [g2, 1, 'blob-put'],
      [g2, 2, 'blob-delete'],
    ]);
    await log.close();
    // The segments on disk say the same after a reopen (not just the tail cache).
    const reopened = await openLog(dir);
    expect((await reopened.readRange(1)).map((r) => [r.generation, r.seq, r.kind])).toEqual([
      [g2, 1, 'blob-put'],
      [g2, 2, 'blob-delete'],
    ]);
    await reopened.close();
  });

  it('a txn record does not view the caller\'s pages: the caller reusing its buffer after appendTxn changes neither the record nor the log, also when the append waits for a generation change', async () => {
    // The WAL tailer reads every commit into one reused buffer; the record
    // the log returns (and emits to live replicas) must not view it.
    const dir = tempDir();
    const log = await openLog(dir);
    await startGen(log, 'a'.repeat(32));
    const callerBuffer = new Uint8Array(2 * PAGE);
    const appendFrom = (n: number): Promise<LogRecord> => {
      callerBuffer.fill(n);
      const pages = [
        { pgno: 1, data: callerBuffer.subarray(0, PAGE) },
        { pgno: 2, data: callerBuffer.subarray(PAGE) },
      ];
      const appended = log.appendTxn({ commitSize: 2, checksum: checksum(n), commitTime: n, pages }, 1, wal(32 + n * 100));
      callerBuffer.fill(0xee);
      return appended;
    };
    // Checked as soon as each resolves: a record's pages are valid until the
    // next append (they may lie in the log's reused staging arena).
    const check = (r: LogRecord, fill: number): void => {
      if (r.kind !== 'txn') throw new Error(r.kind);
      expect(r.txn.pages.map((p) => [p.pgno, Buffer.from(p.data).equals(Buffer.alloc(PAGE, fill))])).toEqual([
        [1, true],
        [2, true],
      ]);
    };
    check(await appendFrom(1), 1);
    const starting = startGen(log, 'b'.repeat(32));
    const deferred = appendFrom(2);
    await starting;
    const second = await deferred;
    expect(second.generation).toBe('b'.repeat(32));
    check(second, 2);
    const [onDisk] = await log.readRange(1);
    if (onDisk?.kind !== 'txn') throw new Error('txn');
    expect(onDisk.txn.pages.every((p) => Buffer.from(p.data).equals(Buffer.alloc(PAGE, 2)))).toBe(true);
    await log.close();
  });

  it('the staging arena is never refilled under queued or in-flight records: 1,200 appends queued at once (more than the arena holds), each read back intact', async () => {
    const dir = tempDir();
    const log = await openLog(dir);
    await startGen(log, 'a'.repeat(32));
    const page = (seq: number, pgno: number): Uint8Array => new Uint8Array(PAGE).fill((seq * 7 + pgno) & 0xff);
    const append = (n: number): Promise<LogRecord> =>
      log.appendTxn({ commitSize: 2, checksum: checksum(n), commitTime: n, pages: [1, 2].map((pgno) => ({ pgno, data: page(n, pgno) })) }, 1, wal(32 + n * 100));
    // 1,200 records of 2 KiB pages' worth are about 2.5 MB: past the 2 MiB
    // arena, so later records get their own buffers while the first ones
    // are still queued or being written.
    const first = await Promise.all(Array.from({ length: 1200 }, (_, i) => append(i + 1)));
    expect(first.map((r) => r.seq)).toEqual(Array.from({ length: 1200 }, (_, i) => i + 1));
    // A second burst reuses the arena from its start, now that nothing in it is pending.
    const second = await Promise.all(Array.from({ length: 50 }, (_, i) => append(1201 + i)));
    const views = (r: LogRecord): ArrayBufferLike => (r.kind === 'txn' ? r.txn.pages[0]!.data.buffer : new ArrayBuffer(0));
    expect(views(second[0]!)).toBe(views(first[0]!));
    const all = await log.readRange(1);
    expect(all).toHaveLength(1250);
    for (const r of all) {
      if (r.kind !== 'txn') throw new Error(r.kind);
      for (const p of r.txn.pages) expect(Buffer.from(p.data).equals(Buffer.from(page(r.seq, p.pgno))), `seq ${r.seq} page ${p.pgno}`).toBe(true);
    }
    await log.close();
  });

  it('an append that fails to encode (wrong page size) gives its arena room back: later appends still reuse the arena', async () => {
    const dir = tempDir();
    const log = await openLog(dir);
    await startGen(log, 'a'.repeat(32));
    const pages = (fill: number, size = PAGE) => [{ pgno: 1, data: new Uint8Array(size).fill(fill) }];
    const first = await log.appendTxn({ commitSize: 1, checksum: checksum(1), commitTime: 1, pages: pages(1) }, 1, wal(132));
    const { buffer: arena, byteOffset } = first.txn.pages[0]!.data;
    expect(() => log.appendTxn({ commitSize: 1, checksum: checksum(2), commitTime: 2, pages: pages(2, PAGE - 1) }, 1, wal(232))).toThrow(/page 1 has/);
    const next = await log.appendTxn({ commitSize: 1, checksum: checksum(3), commitTime: 3, pages: pages(3) }, 1, wal(332));
    // Refilled from its start: nothing staged is pending any more.
    expect(next.txn.pages[0]!.data.buffer).toBe(arena);
    expect(next.txn.pages[0]!.data.byteOffset).toBe(byteOffset);
    await log.close();
  });

  it('an append that fails to encode leaves no gap in the seqs (regression: its reserved seq was skipped)', async () => {
    const dir = tempDir();
    const log = await openLog(dir);
    await startGen(log, 'a'.repeat(32));
    const pages = (fill: number, size = PAGE) => [{ pgno: 1, data: new Uint8Array(size).fill(fill) }];
    expect((await log.appendTxn({ commitSize: 1, checksum: checksum(1), commitTime: 1, pages: pages(1) }, 1, wal(132))).seq).toBe(1);
    expect(() => log.appendTxn({ commitSize: 1, checksum: checksum(2), commitTime: 2, pages: pages(2, PAGE + 1) }, 1, wal(232))).toThrow(/page 1 has/);
    expect((await log.appendTxn({ commitSize: 1, checksum: checksum(3), commitTime: 3, pages: pages(3) }, 1, wal(332))).seq).toBe(2);
    await log.close();
    const reopened = await openLog(dir);
    expect((await reopened.readRange(1)).map((r) => r.seq)).toEqual([1, 2]);
    await reopened.close();
  });

  it('a record larger than the staging arena is encoded in its own buffer and reads back intact', async () => {
    const dir = tempDir();
    const log = await openLog(dir);
    await startGen(log, 'a'.repeat(32));
    const pages = Array.from({ length: 2100 }, (_, i) => ({ pgno: i + 1, data: new Uint8Array(PAGE).fill(i & 0xff) }));
    await log.appendTxn({ commitSize: 2100, checksum: checksum(1), commitTime: 1, pages }, 1, wal(132));
    const [r] = await log.readRange(1);
    if (r?.kind !== 'txn') throw new Error('txn');
    expect(r.txn.pages.every((p, i) => p.pgno === i + 1 && Buffer.from(p.data).equals(Buffer.alloc(PAGE, i & 0xff)))).toBe(true);
    await log.close();
  });

  it('flush() and close() wait for appends deferred by a generation change (was: flush returned before they were even queued)', async () => {
    const dir = tempDir();
    const log = await openLog(dir);
    await startGen(log, 'a'.repeat(32));
    await appendTxn(log, 1);
    const g2 = 'c'.repeat(32);
    const starting = startGen(log, g2);
    let appended: LogRecord | undefined;
    void appendTxn(log, 2).then((r) => (appended = r));
    await log.flush();
    expect(appended?.generation).toBe(g2);
    expect(log.head?.seq).toBe(1);
    await starting;
    const closing = startGen(log, 'd'.repeat(32));
    const late = log.appendBlobPut({ blobId: 'x', size: 1, sha256: 'ab'.repeat(32) });
    await log.close();
    await closing;
    expect((await late).generation).toBe('d'.repeat(32));
    const reopened = await openLog(dir);
    expect((await reopened.readRange(1)).map((r) => [r.generation, r.seq, r.kind])).toEqual([['d'.repeat(32), 1, 'blob-put']]);
    await reopened.close();
  });

  it('startGeneration that fails before the new segment is open leaves the old generation current and appendable, and removes the new segment', async () => {
    const dir = tempDir();
    const log = await openLog(dir);
    await startGen(log, 'a'.repeat(32));
    for (let n = 1; n <= 3; n++) await appendTxn(log, n);
    const before = segments(dir);
    armFailpoint('primary.log.generation.open', 'errno(EIO)*1');
    const deferred = appendTxn(log, 4); // queued behind the change: lands in the generation that is current after it
    await expect(startGen(log, 'e'.repeat(32))).rejects.toMatchObject({ code: 'EIO' });
    expect(log.generation).toBe('a'.repeat(32));
    expect(log.failed).toBe(false);
    expect(segments(dir)).toEqual(before);
    expect((await deferred).generation).toBe('a'.repeat(32));
    expect((await appendTxn(log, 5)).seq).toBe(5);
    await log.close();
    const reopened = await openLog(dir);
    expect(reopened.generation).toBe('a'.repeat(32));
    expect((await reopened.readRange(1)).map((r) => r.seq)).toEqual([1, 2, 3, 4, 5]);
    await reopened.close();
  });

  it('startGeneration whose removal of the old segments fails still switches; the next open removes the leftovers', async () => {
    const dir = tempDir();
    const log = await openLog(dir, 8 * 1024);
    await startGen(log, 'a'.repeat(32));
    for (let n = 1; n <= 10; n++) await appendTxn(log, n); // several segments
    const old = segments(dir);
    expect(old.length).toBeGreaterThan(1);
    armFailpoint('primary.log.generation.remove-old', 'errno(EIO)*1');
    await startGen(log, 'f'.repeat(32));
    expect(log.generation).toBe('f'.repeat(32));
    expect(log.failed).toBe(false);
    expect(segments(dir).length).toBe(old.length + 1); // the leftovers are still there
    expect((await appendTxn(log, 1)).seq).toBe(1);
    await log.close();
    const reopened = await openLog(dir, 8 * 1024);
    expect(reopened.generation).toBe('f'.repeat(32));
    expect(segments(dir).length).toBe(1);
    expect((await reopened.readRange(1)).map((r) => [r.generation, r.seq])).toEqual([['f'.repeat(32), 1]]);
    await reopened.close();
  });
});
