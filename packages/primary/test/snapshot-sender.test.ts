import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { type SnapshotSource, streamSnapshot } from '@walwire/primary';
import { DEFAULT_PROTOCOL_LIMITS, type Message, MessageType, crc32, decodeMessage } from '@walwire/protocol';
import { silentLogger } from '@walwire/runtime';

const PAGE = 4096;
const CHUNK_PAGES = 4;
const GEN = '0123456789abcdef0123456789abcdef';

/**
 * An in-memory image (the store's files are covered by snapshot-store.test
 * and the bootstrap tests); `damage` flips a byte after the CRCs were taken,
 * as a disk that rots under a published image would.
 */
function source(pages: number, damage?: number): { source: SnapshotSource; image: Buffer; closed: () => boolean } {
  const image = randomBytes(pages * PAGE);
  const chunkBytes = CHUNK_PAGES * PAGE;
  const chunkCrcs: number[] = [];
  for (let at = 0; at < image.length; at += chunkBytes) chunkCrcs.push(crc32(image.subarray(at, at + chunkBytes)));
  const served = Buffer.from(image);
  if (damage !== undefined) served[damage]! ^= 0x40;
  let closed = false;
  return {
    image,
    closed: () => closed,
    source: {
      generation: GEN,
      seq: 9,
      checksum: '89abcdef01234567',
      pageSize: PAGE,
      pageCount: pages,
      chunkPages: CHUNK_PAGES,
      chunkCrcs,
      read: async (offset, length, into) => {
        const out = into ?? Buffer.allocUnsafe(length);
        served.copy(out, 0, offset, offset + length);
        return out.subarray(0, length);
      },
      close: async () => {
        closed = true;
      },
    },
  };
}

async function stream(src: SnapshotSource): Promise<{ messages: Message[]; result: Promise<unknown> }> {
  const messages: Message[] = [];
  const sink = {
    closed: false,
    send(frame: Buffer, done: (err?: Error) => void): void {
      messages.push(decodeMessage(frame));
      setImmediate(done);
    },
  };
  const result = streamSnapshot({ ns: 'app', source: src, sink, limits: DEFAULT_PROTOCOL_LIMITS, chunkBytes: CHUNK_PAGES * PAGE, windowBytes: 65536, logger: silentLogger(), reason: 'test' });
  await result.catch(() => undefined);
  return { messages, result };
}

describe('streamSnapshot', () => {
  it('sends BEGIN, every chunk framed in place and byte-exact under its stored CRC, then END', async () => {
    const { source: src, image, closed } = source(10); // 3 chunks, the last one short
    const { messages, result } = await stream(src);
    await expect(result).resolves.toBeDefined();
    expect(messages.map((m) => m.type)).toEqual([MessageType.SNAPSHOT_BEGIN, MessageType.SNAPSHOT_CHUNK, MessageType.SNAPSHOT_CHUNK, MessageType.SNAPSHOT_CHUNK, MessageType.SNAPSHOT_END]);
    const chunks = messages.filter((m) => m.type === MessageType.SNAPSHOT_CHUNK);
    expect(Buffer.concat(chunks.map((c) => Buffer.from(c.data))).equals(image)).toBe(true);
    const begin = messages[0]!;
    if (begin.type !== MessageType.SNAPSHOT_BEGIN) throw new Error('type');
    expect(chunks.map((c) => c.crc)).toEqual(begin.chunkCrcs);
    expect(closed()).toBe(true);
  });

  it('an image that no longer matches a stored CRC fails on the primary, naming the chunk, and that chunk is never sent', async () => {
    // A byte inside chunk 1 (pages 4..7).
    const { source: src, closed } = source(10, 5 * PAGE + 17);
    const { messages, result } = await stream(src);
    await expect(result).rejects.toThrow(/does not match its stored CRC at chunk 1 of 3: damaged on disk/);
    await expect(result).rejects.toMatchObject({ code: 'WALWIRE_ERR_SNAPSHOT_DAMAGED' });
    expect(messages.filter((m) => m.type === MessageType.SNAPSHOT_CHUNK).map((m) => (m.type === MessageType.SNAPSHOT_CHUNK ? m.index : -1))).toEqual([0]);
    expect(messages.some((m) => m.type === MessageType.SNAPSHOT_END)).toBe(false);
    expect(closed()).toBe(true);
  });
});
