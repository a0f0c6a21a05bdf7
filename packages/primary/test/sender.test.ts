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

function setup(txns: Txn[], options: { flush?: boolean; windowBytes?: number; fromSeq?: number; appliedSeq?: number; limits?: Parameters<typeof resolveProtocolLimits>[0] } = {}) {
  const messages: Message[] = [];
  const log = {
    generation: GEN,
    pageSize: 4096,
    headSeq: () => txns.at(-1)?.seq ?? 0,
    async *read(from: number): AsyncGenerator<LogRecord> {
      for (const t of txns) if (t.seq >= from) yield { kind: 'txn', seq: t.seq, generation: GEN, txn: t, commits: 1 };
    },
    nextAppend: () => new Promise<void>(() => {}),
  };
  const sink = {
    closed: false,
    send(frame: Buffer, done: (err?: Error) => void) {
      messages.push(decodeMessage(frame));
      if (options.flush !== false) queueMicrotask(() => done());
    },
  };
  const sender = new Sender({
    ns: 'app',
    log,
    sink,
    limits: options.limits ? resolveProtocolLimits(options.limits) : DEFAULT_PROTOCOL_LIMITS,
    windowBytes: options.windowBytes ?? 1 << 30,
    logger: silentLogger(),
    generation: GEN,
    fromSeq: options.fromSeq ?? 1,
    appliedSeq: options.appliedSeq ?? 0,
  });
  return { sender, messages };
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
});
