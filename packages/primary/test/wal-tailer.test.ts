import { afterEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WalTailer } from '@walwire/primary';
import { initialWalState, scanWalFrames } from '@walwire/protocol';

const dirs: string[] = [];
const closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function setup(): Promise<{ writer: Database.Database; tailer: WalTailer; path: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'walwire-tailer-'));
  dirs.push(dir);
  const path = join(dir, 'app.db');
  const writer = new Database(path);
  writer.pragma('journal_mode = WAL');
  // The tailer's pin keeps the frames anyway; no checkpoint moves them meanwhile.
  writer.pragma('wal_autocheckpoint = 0');
  writer.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)');
  closers.push(() => writer.close());
  const control = new Database(path);
  closers.push(() => control.close());
  const tailer = new WalTailer(control, { dbPath: path, walReadBytes: 4 * 1024 * 1024, walStallTimeoutMs: 5000, sealTimeoutMs: 5000 });
  closers.push(() => tailer.close());
  const snap = await tailer.establish();
  tailer.state = snap.header === undefined ? undefined : scanWalFrames(snap.bytes, 0, initialWalState(snap.header)).state;
  return { writer, tailer, path };
}

describe('WalTailer', () => {
  it('after releaseBuffer, reads that return no commit do not take the reused buffer again; the next commit brings it back', async () => {
    const { writer, tailer } = await setup();
    const insert = writer.prepare('INSERT INTO t(v) VALUES (?)');
    insert.run(Buffer.alloc(2000, 1));
    expect((await tailer.readNew()).commits).toHaveLength(1);
    expect(tailer.bufferBytes).toBeGreaterThan(0);
    tailer.releaseBuffer();
    expect(tailer.bufferBytes).toBe(0);
    // An open transaction larger than the writer's cache spills frames into
    // the WAL without a commit: every poll reads them and returns nothing.
    writer.pragma('cache_size = 10');
    writer.exec('BEGIN');
    for (let i = 0; i < 60; i++) insert.run(Buffer.alloc(4000, 2));
    for (let i = 0; i < 3; i++) {
      const read = await tailer.readNew();
      expect(read.commits).toHaveLength(0);
      expect(read.walBytes, "the open transaction spilled frames").toBeGreaterThan(100 * 1024);
      expect(tailer.bufferBytes, 'an idle poll allocated the read buffer again').toBe(0);
    }
    writer.exec('COMMIT');
    expect((await tailer.readNew()).commits).toHaveLength(1);
    insert.run(Buffer.alloc(2000, 3));
    expect((await tailer.readNew()).commits).toHaveLength(1);
    expect(tailer.bufferBytes).toBeGreaterThan(0);
  });

  it('returns each commit once, every page byte-exact with its frame in the WAL, across reads of one, many and large commits', async () => {
    const { writer, tailer, path } = await setup();
    const insert = writer.prepare('INSERT INTO t(v) VALUES (?)');
    const seen: number[] = [];
    const byte = (page: Uint8Array, fill: number): boolean => Buffer.from(page).includes(Buffer.alloc(64, fill));
    let fill = 1;
    // 200 KB rows: transactions larger than the first 64 KiB read, so reads continue and double.
    // Ten of them (2 MB) in one read outgrow the reused 1 MiB read buffer:
    // the later reads go to fresh buffers, then asynchronous ones.
    for (const [batch, rowBytes] of [[1, 2000], [3, 2000], [1, 200_000], [7, 2000], [2, 200_000], [10, 200_000]] as const) {
      const fills: number[] = [];
      for (let i = 0; i < batch; i++, fill++) {
        insert.run(Buffer.alloc(rowBytes, fill));
        fills.push(fill);
      }
      const read = await tailer.readNew();
      expect(read.commits.length).toBe(batch);
      const wal = readFileSync(`${path}-wal`);
      read.commits.forEach((c, i) => {
        for (const f of c.frames) {
          // WAL frame (§4.1 of the file format): a 24-byte header, then the page.
          expect(Buffer.compare(Buffer.from(f.page), wal.subarray(f.offset + 24, f.offset + 24 + f.page.length))).toBe(0);
          expect(wal.readUInt32BE(f.offset)).toBe(f.pgno);
        }
        expect(c.endOffset).toBe(c.frames.at(-1)!.offset + 24 + c.frames.at(-1)!.page.length);
        // Each commit carries the row it inserted.
        expect(c.frames.some((f) => byte(f.page, fills[i]!))).toBe(true);
        seen.push(fills[i]!);
      });
    }
    expect(seen).toEqual(Array.from({ length: 24 }, (_, i) => i + 1));
    expect((await tailer.readNew()).commits).toEqual([]);
  });
});
