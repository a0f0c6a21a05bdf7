/** The receiver state machine, fed raw frames; failures are asserted by err.code. */
import { describe, expect, it } from 'vitest';
import { DEFAULT_PROTOCOL_LIMITS, type Message, MessageType, ProtocolError, type Txn, encodeMessage } from '@walwire/protocol';
import { Receiver, type ReceiverSink } from '@walwire/replica';

const G = '0123456789abcdef0123456789abcdef';
const H = 'f'.repeat(32);
const SUM = '0011223344556677';
const page = (pgno: number, fill = pgno): { pgno: number; data: Uint8Array } => ({ pgno, data: new Uint8Array(1024).fill(fill) });
const txn = (seq: number, pgnos: number[]): Txn => ({ seq, commitSize: 10, checksum: SUM, commitTime: 1, pages: pgnos.map((p) => page(p)) });
const welcome = (mode: 'stream' | 'snapshot' = 'stream'): Message => ({
  type: MessageType.WELCOME,
  version: 1,
  primaryId: 'p',
  namespaces: [{ ns: 'app', generation: G, headSeq: 9, mode, reason: '' }],
});

function setup(maxTxnBytes = 1 << 20) {
  const calls: string[] = [];
  const txns: Txn[] = [];
  const sink: ReceiverSink = {
    welcome: () => calls.push('welcome'),
    txns: (ns, gen, list, bytes) => {
      calls.push(`txns ${ns} ${list.map((t) => t.seq).join(',')} ${bytes}`);
      txns.push(...list);
    },
    snapshotBegin: (m) => calls.push(`snapshot-begin ${m.seq}`),
    snapshotChunk: (m) => calls.push(`chunk ${m.index}`),
    snapshotEnd: (ns, gen, seq) => calls.push(`snapshot-end ${seq}`),
    blob: (m, bootstrap) => calls.push(`blob ${m.type}${bootstrap ? ' bootstrap' : ''}`),
    mark: (ns, gen, seq) => calls.push(`mark ${seq}`),
    heartbeat: () => calls.push('heartbeat'),
    peerError: (m) => calls.push(`error ${m.code}`),
  };
  const r = new Receiver({ limits: DEFAULT_PROTOCOL_LIMITS, sink, namespaces: ['app'], maxTxnBytes });
  const feed = (m: Message | Uint8Array): void => r.receive(m instanceof Uint8Array ? m : encodeMessage(m));
  const code = (m: Message | Uint8Array): string => {
    try {
      feed(m);
    } catch (err) {
      expect(err).toBeInstanceOf(ProtocolError);
      return (err as ProtocolError).code;
    }
    return 'accepted';
  };
  return { r, feed, code, calls, txns };
}

describe('Receiver', () => {
  it('walks awaiting-welcome → streaming and delivers batches', () => {
    const { r, feed, calls } = setup();
    expect(r.state).toBe('awaiting-welcome');
    feed({ type: MessageType.HEARTBEAT, sentAt: 5 });
    feed(welcome());
    expect(r.state).toBe('streaming');
    feed({ type: MessageType.TXN, ns: 'app', generation: G, txns: [txn(3, [1, 2]), txn(5, [3])] });
    expect(calls).toEqual(['heartbeat', 'welcome', 'txns app 3,5 3072']);
    r.close();
    expect(r.state).toBe('closed');
  });

  it('refuses what the state does not allow, with WALWIRE_ERR_UNEXPECTED_MESSAGE', () => {
    const { feed, code } = setup();
    expect(code({ type: MessageType.TXN, ns: 'app', generation: G, txns: [txn(1, [1])] })).toBe('WALWIRE_ERR_UNEXPECTED_MESSAGE');
    expect(code({ ...welcome(), namespaces: [{ ns: 'other', generation: G, headSeq: 1, mode: 'stream', reason: '' }] } as Message)).toBe('WALWIRE_ERR_UNEXPECTED_MESSAGE');
    feed(welcome());
    expect(code(welcome())).toBe('WALWIRE_ERR_UNEXPECTED_MESSAGE');
    expect(code({ type: MessageType.TXN, ns: 'app', generation: H, txns: [txn(1, [1])] })).toBe('WALWIRE_ERR_UNEXPECTED_MESSAGE');
    expect(code({ type: MessageType.TXN, ns: 'nope', generation: G, txns: [txn(1, [1])] })).toBe('WALWIRE_ERR_UNEXPECTED_MESSAGE');
    expect(code({ type: MessageType.HELLO, minVersion: 1, maxVersion: 1, replicaId: 'x', namespaces: [] })).toBe('WALWIRE_ERR_UNEXPECTED_MESSAGE');
    feed({ type: MessageType.TXN, ns: 'app', generation: G, txns: [txn(4, [1])] });
    expect(code({ type: MessageType.TXN, ns: 'app', generation: G, txns: [txn(4, [1])] })).toBe('WALWIRE_ERR_UNEXPECTED_MESSAGE');
    expect(code({ type: MessageType.SNAPSHOT_CHUNK, ns: 'app', generation: G, seq: 4, index: 0, data: new Uint8Array(1), crc: 0 })).toBe('WALWIRE_ERR_UNEXPECTED_MESSAGE');
  });

  it('rejects corrupt and malformed frames before anything reaches the sink', () => {
    const { feed, code, calls } = setup();
    feed(welcome());
    const frame = encodeMessage({ type: MessageType.TXN, ns: 'app', generation: G, txns: [txn(1, [1])] });
    frame[600]! ^= 0x04;
    expect(code(frame)).toBe('WALWIRE_ERR_FRAME_CHECKSUM');
    expect(code(Uint8Array.of(1, 2, 3, 4, 5, 6))).toBe('WALWIRE_ERR_FRAME_CHECKSUM');
    expect(code(new Uint8Array(2))).toBe('WALWIRE_ERR_DECODE');
    expect(calls).toEqual(['welcome']);
  });

  it('joins TXN_PART messages into one whole transaction, in order only', () => {
    const { feed, code, calls, txns } = setup();
    feed(welcome());
    const part = (p: number, pgnos: number[], seq = 7): Message => ({
      type: MessageType.TXN_PART, ns: 'app', generation: G, seq, part: p, partCount: 3, commitSize: 10, checksum: SUM, commitTime: 1, pages: pgnos.map((n) => page(n)),
    });
    feed(part(0, [1, 2]));
    feed(part(1, [3]));
    expect(code({ type: MessageType.TXN, ns: 'app', generation: G, txns: [txn(8, [1])] })).toBe('WALWIRE_ERR_UNEXPECTED_MESSAGE');
    expect(code(part(0, [4]))).toBe('WALWIRE_ERR_UNEXPECTED_MESSAGE');
    feed(part(2, [4, 5]));
    expect(calls.at(-1)).toBe('txns app 7 5120');
    expect(txns[0]!.pages.map((p) => p.pgno)).toEqual([1, 2, 3, 4, 5]);
    expect(code(part(1, [4], 9))).toBe('WALWIRE_ERR_UNEXPECTED_MESSAGE');
  });

  it('bounds an assembled transaction by maxTxnBytes and refuses repeated pages across parts', () => {
    const small = setup(2048);
    small.feed(welcome());
    const part = (p: number, pgnos: number[]): Message => ({
      type: MessageType.TXN_PART, ns: 'app', generation: G, seq: 2, part: p, partCount: 2, commitSize: 10, checksum: SUM, commitTime: 1, pages: pgnos.map((n) => page(n)),
    });
    small.feed(part(0, [1, 2]));
    expect(small.code(part(1, [3]))).toBe('WALWIRE_ERR_INVALID_MESSAGE');
    const dup = setup();
    dup.feed(welcome());
    dup.feed(part(0, [1]));
    expect(dup.code(part(1, [1]))).toBe('WALWIRE_ERR_INVALID_MESSAGE');
  });

  it('accepts a snapshot only in order: begin, chunks 0..n-1, end; then streams', () => {
    const { feed, code, calls } = setup();
    feed(welcome('snapshot'));
    const head = { ns: 'app', generation: G, seq: 9 };
    feed({ type: MessageType.SNAPSHOT_BEGIN, ...head, pageSize: 1024, pageCount: 3, checksum: SUM, chunkPages: 2, chunkCrcs: [1, 2], fromChunk: 0 });
    expect(code({ type: MessageType.SNAPSHOT_CHUNK, ...head, index: 1, data: new Uint8Array(1024), crc: 2 })).toBe('WALWIRE_ERR_UNEXPECTED_MESSAGE');
    feed({ type: MessageType.SNAPSHOT_CHUNK, ...head, index: 0, data: new Uint8Array(2048), crc: 1 });
    expect(code({ type: MessageType.SNAPSHOT_END, ...head })).toBe('WALWIRE_ERR_UNEXPECTED_MESSAGE');
    feed({ type: MessageType.SNAPSHOT_CHUNK, ...head, index: 1, data: new Uint8Array(1024), crc: 2 });
    feed({ type: MessageType.SNAPSHOT_END, ...head });
    expect(code({ type: MessageType.TXN, ns: 'app', generation: G, txns: [txn(9, [1])] })).toBe('WALWIRE_ERR_UNEXPECTED_MESSAGE');
    feed({ type: MessageType.TXN, ns: 'app', generation: G, txns: [txn(10, [1])] });
    expect(calls).toEqual(['welcome', 'snapshot-begin 9', 'chunk 0', 'chunk 1', 'snapshot-end 9', 'txns app 10 1024']);
  });

  it('passes peer errors and blob events to the sink', () => {
    const { feed, calls } = setup();
    feed(welcome());
    feed({ type: MessageType.ERROR, code: 'WALWIRE_ERR_UNKNOWN_NAMESPACE', message: 'x', ns: 'app', fatal: false });
    feed({ type: MessageType.BLOB_DELETE, ns: 'app', generation: G, seq: 3, blobId: 'b1' });
    expect(calls).toEqual(['welcome', 'error WALWIRE_ERR_UNKNOWN_NAMESPACE', `blob ${MessageType.BLOB_DELETE}`]);
  });

  it('orders blob announcements against transactions and allows bootstrap blobs only at the snapshot seq', () => {
    const { feed, calls, code } = setup();
    feed(welcome());
    const sha = 'a'.repeat(64);
    feed({ type: MessageType.BLOB_BEGIN, ns: 'app', generation: G, seq: 5, blobId: 'b1', size: 3, sha256: sha });
    // The empty transaction of the event follows its announcement.
    feed({ type: MessageType.TXN, ns: 'app', generation: G, txns: [{ seq: 5, commitSize: 1, checksum: '0000000000000000', commitTime: 1, pages: [] }] });
    feed({ type: MessageType.BLOB_CHUNK, ns: 'app', generation: G, seq: 5, blobId: 'b1', offset: 0, data: new Uint8Array(3), crc: 0 });
    feed({ type: MessageType.STREAM_MARK, ns: 'app', generation: G, seq: 5 });
    // An announcement at or below a delivered seq is out of order.
    expect(code({ type: MessageType.BLOB_DELETE, ns: 'app', generation: G, seq: 5, blobId: 'b2' })).toBe('WALWIRE_ERR_UNEXPECTED_MESSAGE');
    expect(calls).toEqual(['welcome', `blob ${MessageType.BLOB_BEGIN}`, 'txns app 5 0', `blob ${MessageType.BLOB_CHUNK}`, 'mark 5']);
  });

  it('takes bootstrap blobs inside a snapshot stream at its seq only, and no deletes there', () => {
    const { feed, calls, code } = setup();
    feed(welcome('snapshot'));
    const head = { ns: 'app', generation: G, seq: 9 };
    feed({ type: MessageType.SNAPSHOT_BEGIN, ...head, pageSize: 512, pageCount: 1, checksum: '0000000000000000', chunkPages: 1, chunkCrcs: [0], fromChunk: 0 });
    feed({ type: MessageType.BLOB_BEGIN, ...head, blobId: 'b1', size: 0, sha256: 'e'.repeat(64) });
    expect(code({ type: MessageType.BLOB_BEGIN, ...head, seq: 8, blobId: 'b2', size: 0, sha256: 'e'.repeat(64) })).toBe('WALWIRE_ERR_UNEXPECTED_MESSAGE');
    expect(calls).toEqual(['welcome', 'snapshot-begin 9', `blob ${MessageType.BLOB_BEGIN} bootstrap`]);
  });

  it('refuses a blob delete inside a snapshot stream', () => {
    const { feed, code } = setup();
    feed(welcome('snapshot'));
    const head = { ns: 'app', generation: G, seq: 9 };
    feed({ type: MessageType.SNAPSHOT_BEGIN, ...head, pageSize: 512, pageCount: 1, checksum: '0000000000000000', chunkPages: 1, chunkCrcs: [0], fromChunk: 0 });
    expect(code({ type: MessageType.BLOB_DELETE, ...head, blobId: 'b1' })).toBe('WALWIRE_ERR_UNEXPECTED_MESSAGE');
  });
});
