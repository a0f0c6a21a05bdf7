import { describe, expect, it } from 'vitest';
import { DEFAULT_PROTOCOL_LIMITS, type Message, MessageType, type Txn, decodeMessage, resolveProtocolLimits } from '@walwire/protocol';
import { type LogRecord, Sender } from '@walwire/primary';
import { silentLogger } from '@walwire/runtime';

const GEN = 'd'.repeat(32);
const SUM = '0011223344556677';
const txn = (seq: number, pages: number): Txn => ({
  seq,
  commitSize: 100_000,
  checksum: SUM,
  commitTime: seq,
  pages: Array.from({ length: pages }, (_, i) => ({ pgno: i + 1, data: new Uint8Array(4096).fill(seq & 0xff) })),
});

function setup(
  txns: Txn[],
  options: { flush?: boolean; windowBytes?: number; fromSeq?: number; appliedSeq?: number; limits?: Parameters<typeof resolveProtocolLimits>[0]; messageTargetBytes?: number } = {},
) {
  const messages: Message[] = [];
  /** Every frame handed to the sink and the callback that flushes it, in order. */
  const frames: { frame: Buffer; copy: Buffer; done: (err?: Error) => void }[] = [];
  const log = {
    generation: GEN,
    pageSize: 4096,
    headSeq: () => txns.at(-1)?.seq ?? 0,
    async *read(from: number): AsyncGenerator<LogRecord> {
      for (const t of txns) if (t.seq >= from) yield { kind: 'txn', seq: t.seq, generation: GEN, txn: t, commits: 1 };
    },
    nextAppend: () => new Promise<void>((resolve) => (wake = resolve)),
  };
  let wake: () => void = () => {};
  /** Appends a seq to the log and wakes a sender waiting for it. */
  const append = (t: Txn): void => {
    txns.push(t);
    wake();
  };
  const sink = {
    closed: false,
    send(frame: Buffer, done: (err?: Error) => void) {
      messages.push(decodeMessage(frame));
      frames.push({ frame, copy: Buffer.from(frame), done });
      if (options.flush !== false) queueMicrotask(() => done());
    },
  };
  const sender = new Sender({
    ns: 'app',
    log,
    sink,
    limits: options.limits ? resolveProtocolLimits(options.limits) : DEFAULT_PROTOCOL_LIMITS,
    windowBytes: options.windowBytes ?? 1 << 30,
    ...(options.messageTargetBytes === undefined ? {} : { messageTargetBytes: options.messageTargetBytes }),
    logger: silentLogger(),
    generation: GEN,
    fromSeq: options.fromSeq ?? 1,
    appliedSeq: options.appliedSeq ?? 0,
  });
  return { sender, messages, frames, append };
}

const until = async (cond: () => boolean): Promise<void> => {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 2));
};

describe('Sender', () => {
  it('batches small seqs into TXN messages within the page budget', async () => {
    const limits = { maxPagesPerMessage: 10 };
    const { sender, messages } = setup(Array.from({ length: 12 }, (_, i) => txn(i + 1, 3)), { limits });
    void sender.run();
    await until(() => sender.stats.sentSeq === 12);
    sender.stop();
    const batches = messages.map((m) => (m.type === MessageType.TXN ? m.txns.map((t) => t.seq) : []));
    expect(batches.flat()).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    for (const m of messages) if (m.type === MessageType.TXN) expect(m.txns.reduce((n, t) => n + t.pages.length, 0)).toBeLessThanOrEqual(10);
  });

  it('splits a seq larger than one message into ordered TXN_PART messages', async () => {
    const { sender, messages } = setup([txn(1, 2), txn(2, 25), txn(3, 1)], { limits: { maxPagesPerMessage: 10 } });
    void sender.run();
    await until(() => sender.stats.sentSeq === 3);
    sender.stop();
    const parts = messages.filter((m) => m.type === MessageType.TXN_PART);
    expect(parts.map((m) => (m.type === MessageType.TXN_PART ? `${m.seq}:${m.part}/${m.partCount}:${m.pages.length}` : ''))).toEqual(['2:0/3:10', '2:1/3:10', '2:2/3:5']);
    expect(messages.map((m) => m.type).filter((t) => t !== MessageType.STREAM_MARK)).toEqual([MessageType.TXN, MessageType.TXN_PART, MessageType.TXN_PART, MessageType.TXN_PART, MessageType.TXN]);
  });

  it('resumes at fromSeq and skips transactions at or below the applied seq', async () => {
    const { sender, messages } = setup(Array.from({ length: 6 }, (_, i) => txn(i + 1, 1)), { fromSeq: 3, appliedSeq: 4 });
    void sender.run();
    await until(() => sender.stats.sentSeq === 6);
    sender.stop();
    expect(messages.flatMap((m) => (m.type === MessageType.TXN ? m.txns.map((t) => t.seq) : []))).toEqual([5, 6]);
  });

  it('stops sending when the unflushed window is full (bounded memory per replica)', async () => {
    const { sender, messages } = setup(Array.from({ length: 200 }, (_, i) => txn(i + 1, 4)), { flush: false, windowBytes: 100_000, limits: { maxPagesPerMessage: 8 } });
    void sender.run();
    await until(() => sender.stats.blockedSince !== null);
    const sent = messages.length;
    await new Promise((r) => setTimeout(r, 30));
    expect(messages.length).toBe(sent);
    expect(sender.stats.unflushedBytes).toBeGreaterThanOrEqual(100_000);
    expect(sender.stats.unflushedBytes).toBeLessThan(100_000 + 8 * 4200);
    expect(sender.stats.sentSeq).toBeLessThan(200);
    sender.stop();
  });

  it('counts a large seq as sent and unacknowledged from its first part (lag while it streams on a slow link)', async () => {
    // Seq 1 is 25 pages in parts of 10; a window of one part holds the rest back.
    const { sender, messages, frames } = setup([txn(1, 25)], { flush: false, windowBytes: 30_000, limits: { maxPagesPerMessage: 10 } });
    void sender.run();
    await until(() => sender.stats.blockedSince !== null);
    expect(messages.filter((m) => m.type === MessageType.TXN_PART)).toHaveLength(1);
    expect(sender.stats.unackedBytes).toBe(10 * 4096);
    expect(sender.stats.oldestUnackedCommitTime).toBe(1);
    let flushed = 0;
    const flushNew = (): void => {
      while (flushed < frames.length) frames[flushed++]!.done();
    };
    flushNew();
    await until(() => messages.filter((m) => m.type === MessageType.TXN_PART).length === 2);
    expect(sender.stats.unackedBytes).toBe(20 * 4096);
    flushNew();
    await until(() => messages.filter((m) => m.type === MessageType.TXN_PART).length === 3);
    expect(sender.stats.unackedBytes).toBe(25 * 4096);
    sender.acked(1);
    expect(sender.stats.unackedBytes).toBe(0);
    expect(sender.stats.oldestUnackedCommitTime).toBeNull();
    sender.stop();
  });

  it('reuses frame memory only once the frame using it is flushed, and charges the whole buffer to the window', async () => {
    // 64 KiB messages (16 pages); 40 seqs of 8 pages pair up into 20 full messages.
    const { sender, frames } = setup(Array.from({ length: 40 }, (_, i) => txn(i + 1, 8)), { flush: false, windowBytes: 200_000, messageTargetBytes: 16 * 4096 });
    const data = (): typeof frames => frames.filter((f) => f.frame.length > 60_000);
    void sender.run();
    await until(() => sender.stats.blockedSince !== null);
    const unit = data()[0]!.frame.buffer.byteLength;
    expect(unit).toBeGreaterThan(data()[0]!.frame.length);
    expect(unit).toBeLessThan(2 * data()[0]!.frame.length);
    // Charged by buffer, not by frame bytes.
    const small = frames.filter((f) => f.frame.length <= 60_000).reduce((n, f) => n + f.frame.length, 0);
    expect(sender.stats.unflushedBytes).toBe(data().length * unit + small);
    expect(sender.stats.unflushedBytes).toBeLessThan(200_000 + unit);
    let flushed = 0;
    while (flushed < frames.length || sender.stats.sentSeq < 40) {
      const pending = frames.slice(flushed);
      // No two unflushed frames share memory, and none was overwritten while unflushed.
      expect(new Set(pending.map((f) => f.frame.buffer)).size).toBe(pending.length);
      for (const f of pending) expect(f.frame.equals(f.copy)).toBe(true);
      if (flushed < frames.length) frames[flushed++]!.done();
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(sender.stats.sentSeq).toBe(40);
    // Memory was reused: as many buffers as fit the window, not one per frame.
    expect(data().length).toBeGreaterThan(10);
    expect(new Set(data().map((f) => f.frame.buffer)).size).toBeLessThanOrEqual(Math.ceil(200_000 / unit) + 1);
    sender.stop();
  });

  it('keeps no frame memory once caught up, also of frames flushed after that (an idle stream holds none)', async () => {
    const txns = Array.from({ length: 4 }, (_, i) => txn(i + 1, 16));
    const { sender, frames, append } = setup(txns, { flush: false, messageTargetBytes: 16 * 4096 });
    const data = (): typeof frames => frames.filter((f) => f.frame.length > 60_000);
    void sender.run();
    await until(() => data().length === 4 && sender.stats.sentSeq === 4);
    await new Promise((r) => setTimeout(r, 10)); // waiting for the next append now
    for (const f of frames) f.done();
    append(txn(5, 16));
    await until(() => data().length === 5);
    const earlier = new Set(data().slice(0, 4).map((f) => f.frame.buffer));
    expect(earlier.size).toBe(4);
    expect(earlier.has(data()[4]!.frame.buffer)).toBe(false);
    sender.stop();
  });

  it('does not reuse the memory of a frame whose write failed', async () => {
    // One full 16-page message per seq; one frame fills the window, so the next waits for it.
    const { sender, frames } = setup(Array.from({ length: 8 }, (_, i) => txn(i + 1, 16)), { flush: false, windowBytes: 65536, messageTargetBytes: 16 * 4096 });
    const data = (): typeof frames => frames.filter((f) => f.frame.length > 60_000);
    const running = sender.run().catch((err: Error) => err);
    await until(() => data().length === 1 && sender.stats.blockedSince !== null);
    // The socket may still hold a frame whose write failed: the waiting message must not be built in its memory.
    data()[0]!.done(new Error('socket reset'));
    await until(() => data().length === 2);
    expect(data()[1]!.frame.buffer).not.toBe(data()[0]!.frame.buffer);
    expect(data()[0]!.frame.equals(data()[0]!.copy)).toBe(true);
    data()[1]!.done();
    expect(await running).toHaveProperty('message', 'socket reset');
    sender.stop();
  });
});
