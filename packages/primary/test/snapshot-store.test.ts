import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DatabaseChecksum, type Txn, crc32 } from '@walwire/protocol';
import { type LogRecord, SnapshotStore } from '@walwire/primary';
import { silentLogger } from '@walwire/runtime';

const GEN = 'c'.repeat(32);
const PAGE = 1024;
let dir = '';
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function checksumOf(pages: Map<number, Uint8Array>, count: number): string {
  const sum = new DatabaseChecksum();
  for (let p = 1; p <= count; p++) sum.setPage(p, pages.get(p) ?? new Uint8Array(PAGE));
  return sum.value;
}

async function base(store: SnapshotStore, pages: Map<number, Uint8Array>, count: number) {
  return store.writeImage({ generation: GEN, seq: 0, checksum: checksumOf(pages, count), pageSize: PAGE, pageCount: count }, async (write) => {
    for (let p = 1; p <= count; p++) await write((p - 1) * PAGE, pages.get(p)!);
  });
}

function logOf(records: Txn[]) {
  return {
    generation: GEN,
    async *read(from: number, to?: number): AsyncGenerator<LogRecord> {
      for (const txn of records) if (txn.seq >= from && (to === undefined || txn.seq <= to)) yield { kind: 'txn', seq: txn.seq, generation: GEN, txn, commits: 1 };
    },
  };
}

describe('SnapshotStore', () => {
  it('publishes an image and finds it again at open; half-published files are removed', async () => {
    dir = mkdtempSync(join(tmpdir(), 'walwire-snap-'));
    const pages = new Map([1, 2, 3].map((p) => [p, randomBytes(PAGE)]));
    const store = await SnapshotStore.open(dir, silentLogger());
    const meta = await base(store, pages, 3);
    writeFileSync(join(dir, `${GEN}-7.img.tmp`), 'partial');
    writeFileSync(join(dir, `${GEN}-9.img`), 'image without meta');
    const reopened = await SnapshotStore.open(dir, silentLogger());
    expect(reopened.latest).toEqual(meta);
    expect(readdirSync(dir).sort()).toEqual([`${GEN}-0.img`, `${GEN}-0.json`]);
  });

  it('advances by replaying log records, verified against the log checksum', async () => {
    dir = mkdtempSync(join(tmpdir(), 'walwire-snap-'));
    const pages = new Map([1, 2, 3, 4].map((p) => [p, randomBytes(PAGE)]));
    const store = await SnapshotStore.open(dir, silentLogger());
    await base(store, pages, 4);
    // seq 1 rewrites page 2 and grows to 5 pages; seq 2 shrinks to 3 pages.
    const p2 = randomBytes(PAGE);
    const p5 = randomBytes(PAGE);
    const after1 = new Map(pages).set(2, p2).set(5, p5);
    const txns: Txn[] = [
      { seq: 1, commitSize: 5, checksum: checksumOf(after1, 5), commitTime: 0, pages: [{ pgno: 2, data: p2 }, { pgno: 5, data: p5 }] },
      { seq: 2, commitSize: 3, checksum: checksumOf(after1, 3), commitTime: 0, pages: [] },
    ];
    const reader0 = await store.openReader();
    const meta = await store.advance(logOf(txns), 2, txns[1]!.checksum);
    expect(meta).toMatchObject({ seq: 2, pageCount: 3, checksum: txns[1]!.checksum });
    const reader = await store.openReader();
    expect(Buffer.from(await reader.read(PAGE, PAGE)).equals(p2)).toBe(true);
    await reader.close();
    // The replaced image stays readable until its reader closes.
    expect((await reader0.read(0, PAGE)).length).toBe(PAGE);
    await reader0.close();
  });

  it('stores a CRC-32 per chunk with each published image (base and advanced), so a bootstrap reads the image once', async () => {
    dir = mkdtempSync(join(tmpdir(), 'walwire-snap-'));
    const pages = new Map([1, 2, 3, 4, 5].map((p) => [p, randomBytes(PAGE)]));
    const store = await SnapshotStore.open(dir, silentLogger(), 2 * PAGE);
    const crcsOf = (image: Map<number, Uint8Array>, count: number): number[] => {
      const out: number[] = [];
      for (let p = 1; p <= count; p += 2) out.push(crc32(Buffer.concat([image.get(p)!, ...(p + 1 <= count ? [image.get(p + 1)!] : [])])));
      return out;
    };
    const meta = await base(store, pages, 5);
    expect(meta).toMatchObject({ chunkPages: 2, chunkCrcs: crcsOf(pages, 5) });
    const p3 = randomBytes(PAGE);
    const after = new Map(pages).set(3, p3);
    const txns: Txn[] = [{ seq: 1, commitSize: 4, checksum: checksumOf(after, 4), commitTime: 0, pages: [{ pgno: 3, data: p3 }] }];
    const advanced = await store.advance(logOf(txns), 1, txns[0]!.checksum);
    expect(advanced).toMatchObject({ seq: 1, pageCount: 4, chunkPages: 2, chunkCrcs: crcsOf(after, 4) });
    expect((await SnapshotStore.open(dir, silentLogger())).latest).toEqual(advanced);
    const reader = await store.openReader();
    expect(reader.chunkCrcs).toEqual(crcsOf(after, 4));
    await reader.close();
  });

  it('refuses to publish an image whose replayed checksum differs from the log, keeping the old one', async () => {
    dir = mkdtempSync(join(tmpdir(), 'walwire-snap-'));
    const pages = new Map([1, 2].map((p) => [p, randomBytes(PAGE)]));
    const store = await SnapshotStore.open(dir, silentLogger());
    const meta = await base(store, pages, 2);
    const txns: Txn[] = [{ seq: 1, commitSize: 2, checksum: '0123456789abcdef', commitTime: 0, pages: [{ pgno: 1, data: randomBytes(PAGE) }] }];
    await expect(store.advance(logOf(txns), 1, '0123456789abcdef')).rejects.toMatchObject({ code: 'WALWIRE_ERR_LOG_CORRUPT' });
    expect(store.latest).toEqual(meta);
    expect(readdirSync(dir).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });
});
