/** Pure SQLite-format units with byte fixtures: page 1, WAL checksum, journal, database checksum. */
import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  DatabaseChecksum,
  EMPTY_CHECKSUM,
  JournalFormatError,
  WalFormatError,
  decodeJournal,
  encodeJournal,
  encodeWalFrame,
  encodeWalHeader,
  initialWalState,
  journalRecordChecksum,
  lockBytePage,
  normalizePage1,
  pageHash,
  parseDatabaseHeader,
  parseWalHeader,
  patchReplicaPage1,
  scanWalFrames,
  walChecksum,
} from '@walwire/protocol';

function header(pageSize = 4096): Uint8Array {
  const p = new Uint8Array(pageSize);
  p.set(Buffer.from('SQLite format 3\0', 'latin1'));
  new DataView(p.buffer).setUint16(16, pageSize === 65536 ? 1 : pageSize, false);
  p[18] = 2;
  p[19] = 2;
  new DataView(p.buffer).setUint32(28, 7, false);
  return p;
}

describe('page 1 header (fileformat2 §1.3)', () => {
  it('parses page size, versions and the in-header size', () => {
    const h = parseDatabaseHeader(header());
    expect(h).toMatchObject({ pageSize: 4096, writeVersion: 2, readVersion: 2, pageCount: 7, sizeValid: true });
    expect(parseDatabaseHeader(header(65536)).pageSize).toBe(65536);
  });

  it('rejects bad magic and bad page sizes with WALWIRE_ERR_DATABASE_FORMAT', () => {
    const bad = header();
    bad[0] = 0x73;
    expect(() => parseDatabaseHeader(bad)).toThrow(expect.objectContaining({ code: 'WALWIRE_ERR_DATABASE_FORMAT' }));
    const odd = header();
    new DataView(odd.buffer).setUint16(16, 3000, false);
    expect(() => parseDatabaseHeader(odd)).toThrow(/invalid page size 3000/);
    expect(() => parseDatabaseHeader(new Uint8Array(50))).toThrow(/needs 100 bytes/);
  });

  it('patches a replica copy: bytes 18-19 = 1, change counter at 24 and 92, nothing else', () => {
    const primary = header();
    primary.fill(0xab, 100);
    const replica = patchReplicaPage1(primary, 0x01020304);
    expect(primary[18]).toBe(2);
    expect([replica[18], replica[19]]).toEqual([1, 1]);
    expect(Buffer.from(replica.subarray(24, 28)).toString('hex')).toBe('01020304');
    expect(Buffer.from(replica.subarray(92, 96)).toString('hex')).toBe('01020304');
    const diff = [...replica.keys()].filter((i) => replica[i] !== primary[i]);
    expect(diff.every((i) => [18, 19, 24, 25, 26, 27, 92, 93, 94, 95].includes(i))).toBe(true);
    expect(parseDatabaseHeader(replica).sizeValid).toBe(true);
  });

  it('places the lock-byte page at offset 2^30', () => {
    expect(lockBytePage(4096)).toBe(262145);
    expect(lockBytePage(65536)).toBe(16385);
    expect(lockBytePage(512)).toBe(2097153);
  });
});

describe('WAL checksum (fileformat2 §4.3)', () => {
  it('matches a hand computation of s0 += x0 + s1; s1 += x1 + s0', () => {
    const bytes = Uint8Array.of(0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4);
    // Big-endian words 1,2,3,4: (1, 3) then s0 = 1+3+3 = 7, s1 = 3+4+7 = 14.
    expect(walChecksum(bytes, 0, 16, true)).toEqual([7, 14]);
    // Little-endian words 0x01000000 … wrap mod 2^32.
    const [a, b] = walChecksum(bytes, 0, 16, false);
    const x = [0x01000000, 0x02000000, 0x03000000, 0x04000000];
    let s0 = (x[0]! + 0) >>> 0;
    let s1 = (x[1]! + s0) >>> 0;
    s0 = (s0 + x[2]! + s1) >>> 0;
    s1 = (s1 + x[3]! + s0) >>> 0;
    expect([a, b]).toEqual([s0, s1]);
  });

  it('gives the same result on unaligned views (DataView path) as aligned ones', () => {
    const data = randomBytes(4096 + 1);
    const aligned = new Uint8Array(4096);
    aligned.set(data.subarray(1));
    const unaligned = data.subarray(1);
    for (const be of [true, false]) expect(walChecksum(unaligned, 0, 4096, be)).toEqual(walChecksum(aligned, 0, 4096, be));
  });

  it('refuses a range that is not a multiple of 8 bytes', () => {
    expect(() => walChecksum(new Uint8Array(12), 0, 12, false)).toThrow(WalFormatError);
  });
});

describe('WAL scan over encoded frames', () => {
  const pageSize = 1024;
  function build(bigEndian: boolean, commits: number[][], salts = [11, 22]): { bytes: Uint8Array; pages: Map<number, Uint8Array>[] } {
    const hdr = encodeWalHeader({ bigEndian, pageSize, checkpointSeq: 0, salt1: salts[0]!, salt2: salts[1]! });
    const parsed = parseWalHeader(hdr);
    let sum = [parsed.checksum1, parsed.checksum2] as const;
    const parts: Uint8Array[] = [hdr];
    const states: Map<number, Uint8Array>[] = [];
    let size = 0;
    for (const pgnos of commits) {
      const state = new Map<number, Uint8Array>();
      pgnos.forEach((pgno, i) => {
        size = Math.max(size, pgno);
        const page = randomBytes(pageSize);
        state.set(pgno, page);
        const f = encodeWalFrame(parsed, sum, pgno, i === pgnos.length - 1 ? size : 0, page);
        sum = f.checksum;
        parts.push(f.frame);
      });
      states.push(state);
    }
    return { bytes: Buffer.concat(parts), pages: states };
  }

  it.each([false, true])('cuts committed transactions (bigEndian=%s)', (be) => {
    const { bytes, pages } = build(be, [[1, 2], [3], [2, 4, 5]]);
    const hdr = parseWalHeader(bytes);
    expect(hdr.bigEndian).toBe(be);
    const result = scanWalFrames(bytes, 0, initialWalState(hdr));
    expect(result.stop).toBe('end');
    expect(result.commits.map((c) => c.frames.map((f) => f.pgno))).toEqual([[1, 2], [3], [2, 4, 5]]);
    expect(result.commits.map((c) => c.commitSize)).toEqual([2, 3, 5]);
    expect(Buffer.compare(result.commits[2]!.frames[0]!.page, pages[2]!.get(2)!)).toBe(0);
    expect(result.state.offset).toBe(bytes.length);
  });

  it.each([false, true])('scans bytes at an odd address like aligned bytes, and a flipped page byte stops it there (bigEndian=%s)', (be) => {
    // The scan reads checksum words through a u32 view when it can; bytes
    // that are not 4-byte aligned take the DataView path.
    const { bytes } = build(be, [[1, 2], [3], [2, 4, 5]]);
    const atOdd = (b: Uint8Array): Uint8Array => {
      const out = new Uint8Array(new ArrayBuffer(b.length + 1), 1, b.length);
      out.set(b);
      return out;
    };
    const odd = atOdd(bytes);
    const hdr = parseWalHeader(bytes);
    const aligned = scanWalFrames(bytes, 0, initialWalState(hdr));
    const unaligned = scanWalFrames(odd, 0, initialWalState(hdr));
    expect(unaligned.state).toEqual(aligned.state);
    expect(unaligned.commits.map((c) => c.frames.map((f) => [f.pgno, Buffer.from(f.page).toString('hex')]))).toEqual(
      aligned.commits.map((c) => c.frames.map((f) => [f.pgno, Buffer.from(f.page).toString('hex')])),
    );
    // Aligned bytes that start 2 bytes before the first frame (file offset
    // 30): the frames are not word-aligned in them (was: read the words
    // rounded down, so a valid frame failed its checksum).
    const from30 = Uint8Array.from(bytes.subarray(30));
    const shifted = scanWalFrames(from30, 30, initialWalState(hdr));
    expect([shifted.stop, shifted.state]).toEqual(['end', aligned.state]);
    const flippedBytes = Uint8Array.from(bytes);
    flippedBytes[32 + 3 * (24 + pageSize) + 24 + 100]! ^= 1; // a page byte of the 4th frame (first of the last commit)
    for (const flipped of [flippedBytes, atOdd(flippedBytes)]) {
      const r = scanWalFrames(flipped, 0, initialWalState(hdr));
      expect([r.stop, r.commits.length, r.stopOffset]).toEqual(['checksum-mismatch', 2, 32 + 3 * (24 + pageSize)]);
    }
  });

  it('ships nothing past the last commit frame', () => {
    const { bytes } = build(false, [[1], [2, 3]]);
    const cut = bytes.subarray(0, bytes.length - (24 + pageSize)); // drop the second commit frame
    const result = scanWalFrames(cut, 0, initialWalState(parseWalHeader(cut)));
    expect(result.commits).toHaveLength(1);
    expect(result.pendingFrames).toBe(1);
    expect(result.state.offset).toBe(32 + 24 + pageSize);
  });

  it('resumes from a saved state with bytes read from that offset', () => {
    const { bytes } = build(false, [[1], [2], [3]]);
    const first = scanWalFrames(bytes.subarray(0, 32 + 2 * (24 + pageSize)), 0, initialWalState(parseWalHeader(bytes)));
    expect(first.commits).toHaveLength(2);
    const rest = scanWalFrames(bytes.subarray(first.state.offset), first.state.offset, first.state);
    expect(rest.commits.map((c) => c.frames[0]!.pgno)).toEqual([3]);
  });

  it('stops at a frame whose salts belong to an earlier WAL incarnation', () => {
    const old = build(false, [[1], [2], [3]], [5, 6]).bytes;
    const fresh = build(false, [[1]], [7, 8]).bytes;
    const mixed = Buffer.concat([fresh, old.subarray(fresh.length)]);
    const result = scanWalFrames(mixed, 0, initialWalState(parseWalHeader(mixed)));
    expect(result.stop).toBe('salt-mismatch');
    expect(result.commits).toHaveLength(1);
  });

  it('rejects a bad header: magic, version, page size, checksum', () => {
    const hdr = encodeWalHeader({ bigEndian: false, pageSize, checkpointSeq: 0, salt1: 1, salt2: 2 });
    for (const [at, message] of [[0, /magic/], [7, /format version/], [10, /page size/], [16, /header checksum/]] as const) {
      const bad = Uint8Array.from(hdr);
      bad[at]! ^= 0x10;
      expect(() => parseWalHeader(bad)).toThrow(message);
    }
    expect(() => parseWalHeader(hdr.subarray(0, 31))).toThrow(expect.objectContaining({ code: 'WALWIRE_ERR_WAL_FORMAT' }));
  });
});

describe('rollback journal (fileformat2 §3)', () => {
  const pageSize = 1024;
  const records = [1, 5, 9].map((pgno) => ({ pgno, data: randomBytes(pageSize) }));

  it('encodes the header fields at their offsets, padded to the sector', () => {
    const j = encodeJournal({ pageSize, originalPageCount: 12, nonce: 0xdeadbeef, records, sectorSize: 512 });
    const v = new DataView(j.buffer, j.byteOffset);
    expect(Buffer.from(j.subarray(0, 8)).toString('hex')).toBe('d9d505f920a163d7');
    expect([v.getUint32(8), v.getUint32(12), v.getUint32(16), v.getUint32(20), v.getUint32(24)]).toEqual([3, 0xdeadbeef, 12, 512, pageSize]);
    expect(j.subarray(28, 512).every((b) => b === 0)).toBe(true);
    expect(j.length).toBe(512 + 3 * (pageSize + 8));
    expect(v.getUint32(512)).toBe(1);
    expect(v.getUint32(512 + 4 + pageSize)).toBe(journalRecordChecksum(0xdeadbeef, records[0]!.data));
  });

  it('computes pager_cksum over every 200th byte from the end, as bytes', () => {
    const page = new Uint8Array(1024);
    page[824] = 1;
    page[624] = 2;
    page[424] = 3;
    page[224] = 4;
    page[24] = 5;
    page[0] = 100; // offset 0 is never included (loop runs while i > 0)
    expect(journalRecordChecksum(10, page)).toBe(25);
    expect(journalRecordChecksum(0xffffffff, page)).toBe(14); // wraps mod 2^32
  });

  it('decodes what it encodes', () => {
    const j = encodeJournal({ pageSize, originalPageCount: 12, nonce: 7, records });
    const d = decodeJournal(j);
    expect(d.records.map((r) => r.pgno)).toEqual([1, 5, 9]);
    expect(Buffer.compare(d.records[2]!.data, records[2]!.data)).toBe(0);
  });

  it('catches a wrong record checksum, which SQLite itself would silently ignore', () => {
    const j = encodeJournal({ pageSize, originalPageCount: 12, nonce: 7, records });
    const bad = Uint8Array.from(j);
    bad[4096 + (pageSize + 8) - 1]! ^= 1; // last byte of record 0's checksum
    expect(() => decodeJournal(bad)).toThrow(JournalFormatError);
    expect(() => decodeJournal(bad)).toThrow(/record 0 \(page 1\) checksum/);
  });

  it('refuses records of the wrong size, repeated pages, bad geometry and truncation', () => {
    expect(() => encodeJournal({ pageSize, originalPageCount: 1, nonce: 1, records: [{ pgno: 1, data: new Uint8Array(10) }] })).toThrow(/has 10 bytes/);
    expect(() => encodeJournal({ pageSize, originalPageCount: 1, nonce: 1, records: [records[0]!, records[0]!] })).toThrow(/repeats page 1/);
    expect(() => encodeJournal({ pageSize: 1000, originalPageCount: 1, nonce: 1, records: [] })).toThrow(/page size 1000/);
    expect(() => encodeJournal({ pageSize, originalPageCount: 1, nonce: 1, records: [], sectorSize: 100 })).toThrow(/sector size 100/);
    const j = encodeJournal({ pageSize, originalPageCount: 12, nonce: 7, records });
    expect(() => decodeJournal(j.subarray(0, j.length - 1))).toThrow(/need/);
  });
});

describe('database checksum', () => {
  const pageSize = 512;
  const pages = Array.from({ length: 20 }, () => randomBytes(pageSize));

  it('is SHA-256(u32be(pgno) ‖ page) truncated to 64 bits, XORed', () => {
    const expected = createHash('sha256').update(Uint8Array.of(0, 0, 0, 2)).update(pages[1]!).digest();
    expect(pageHash(2, pages[1]!)).toEqual([expected.readUInt32BE(0), expected.readUInt32BE(4)]);
    const c = new DatabaseChecksum();
    expect(c.value).toBe(EMPTY_CHECKSUM);
    c.setPage(2, pages[1]!);
    expect(c.value).toBe(expected.subarray(0, 8).toString('hex'));
  });

  it('does not depend on the order pages are set', () => {
    const a = new DatabaseChecksum();
    const b = new DatabaseChecksum();
    pages.forEach((p, i) => a.setPage(i + 1, p));
    [...pages.keys()].reverse().forEach((i) => b.setPage(i + 1, pages[i]!));
    expect(a.value).toBe(b.value);
  });

  it('incremental updates equal a full recomputation', () => {
    const inc = new DatabaseChecksum(2);
    pages.forEach((p, i) => inc.setPage(i + 1, p));
    const replaced = randomBytes(pageSize);
    inc.setPage(7, replaced);
    inc.truncate(15);
    const full = new DatabaseChecksum();
    const image = Buffer.concat(pages.slice(0, 15));
    image.set(replaced, 6 * pageSize);
    full.addImage(image, pageSize);
    expect(inc.value).toBe(full.value);
    expect(inc.pageCount).toBe(15);
  });

  it('sees a swap of two pages and a same-offset flip in two pages (no linear blind spot)', () => {
    const base = new DatabaseChecksum();
    pages.forEach((p, i) => base.setPage(i + 1, p));
    const swapped = base.clone();
    swapped.setPage(3, pages[4]!);
    swapped.setPage(5, pages[2]!);
    expect(swapped.value).not.toBe(base.value);
    const flipped = base.clone();
    for (const n of [3, 5]) {
      const copy = Uint8Array.from(pages[n - 1]!);
      copy[100]! ^= 1;
      flipped.setPage(n, copy);
    }
    expect(flipped.value).not.toBe(base.value);
  });

  it('ignores the replica-volatile page-1 bytes and nothing else', () => {
    const p1 = header(pageSize);
    const replica = patchReplicaPage1(p1, 99);
    expect(pageHash(1, replica)).toEqual(pageHash(1, p1));
    const other = Uint8Array.from(p1);
    other[28]! ^= 1;
    expect(pageHash(1, other)).not.toEqual(pageHash(1, p1));
    const normalized = Uint8Array.from(replica);
    normalizePage1(normalized);
    expect([normalized[18], normalized[24], normalized[92]]).toEqual([0, 0, 0]);
  });

  it('skips the lock-byte page when checksumming an image', () => {
    const c = new DatabaseChecksum();
    const first = lockBytePage(65536);
    const image = new Uint8Array(65536 * 2);
    c.addImage(image, 65536, first - 1);
    const d = new DatabaseChecksum();
    d.setPage(first - 1, image.subarray(0, 65536));
    expect(c.value).toBe(d.value);
  });
});
