/** Valid sample messages of every type, shared by the codec and fuzz tests. */
import { type Message, MessageType } from '@walwire/protocol';

export const GEN = '0123456789abcdef0123456789abcdef';
export const SUM = '89abcdef01234567';

export function page(pgno: number, fill: number, size = 4096): { pgno: number; data: Uint8Array } {
  return { pgno, data: new Uint8Array(size).fill(fill) };
}

export function sampleMessages(): Message[] {
  return [
    {
      type: MessageType.HELLO,
      minVersion: 1,
      maxVersion: 1,
      replicaId: 'replica-a',
      namespaces: [
        { ns: 'app', generation: GEN, appliedSeq: 10, durableSeq: 9, checksum: SUM },
        { ns: 'fresh', generation: null, appliedSeq: 0, durableSeq: 0, checksum: null },
      ],
    },
    {
      type: MessageType.WELCOME,
      version: 1,
      primaryId: 'primary-1',
      namespaces: [{ ns: 'app', generation: GEN, headSeq: 12, mode: 'stream', reason: '' }],
    },
    {
      type: MessageType.TXN,
      ns: 'app',
      generation: GEN,
      txns: [
        { seq: 11, commitSize: 3, checksum: SUM, commitTime: 1_700_000_000_000, pages: [page(1, 1), page(3, 3)] },
        { seq: 13, commitSize: 3, checksum: SUM, commitTime: 1_700_000_000_001, pages: [page(2, 2)] },
      ],
    },
    {
      type: MessageType.TXN_PART,
      ns: 'app',
      generation: GEN,
      seq: 14,
      part: 0,
      partCount: 2,
      commitSize: 5,
      checksum: SUM,
      commitTime: 1_700_000_000_002,
      pages: [page(4, 4), page(5, 5)],
    },
    { type: MessageType.BLOB_BEGIN, ns: 'app', generation: GEN, seq: 15, blobId: 'a'.repeat(64), size: 3, sha256: 'b'.repeat(64) },
    { type: MessageType.BLOB_CHUNK, ns: 'app', generation: GEN, seq: 15, blobId: 'img_1.png', offset: 0, data: Uint8Array.of(1, 2, 3), crc: 123 },
    { type: MessageType.BLOB_END, ns: 'app', generation: GEN, seq: 15, blobId: 'img_1.png' },
    { type: MessageType.BLOB_DELETE, ns: 'app', generation: GEN, seq: 16, blobId: 'img_1.png' },
    { type: MessageType.BLOB_GONE, ns: 'app', generation: GEN, seq: 15, blobId: 'img_1.png', reason: 'deleted at seq 16' },
    {
      type: MessageType.SNAPSHOT_BEGIN,
      ns: 'app',
      generation: GEN,
      seq: 16,
      pageSize: 4096,
      pageCount: 5,
      checksum: SUM,
      chunkPages: 2,
      chunkCrcs: [1, 2, 3],
      fromChunk: 0,
    },
    { type: MessageType.SNAPSHOT_CHUNK, ns: 'app', generation: GEN, seq: 16, index: 0, data: new Uint8Array(8192), crc: 7 },
    { type: MessageType.SNAPSHOT_END, ns: 'app', generation: GEN, seq: 16 },
    { type: MessageType.SNAPSHOT_REQUEST, ns: 'app', reason: 'diverged at seq 9', generation: null, seq: 0, fromChunk: 0 },
    { type: MessageType.ACK, ns: 'app', generation: GEN, appliedSeq: 16, durableSeq: 15 },
    { type: MessageType.HEARTBEAT, sentAt: 1_700_000_000_003 },
    { type: MessageType.ERROR, code: 'WALWIRE_ERR_UNKNOWN_NAMESPACE', message: 'no namespace "x"', ns: 'x', fatal: true },
  ];
}
