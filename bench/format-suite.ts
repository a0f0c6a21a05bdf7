/**
 * Foundation figures: the throughput of the pure format code every byte goes
 * through (database checksum, WAL checksum, message codec), each next to the
 * physical baseline of reading the same bytes from memory (a plain copy).
 */
import { randomBytes } from 'node:crypto';
import { DatabaseChecksum, decodeMessage, encodeMessage, MessageType, walChecksum, type Message } from '@walwire/protocol';
import { type Benchmark, type Figure, median, percentile } from './lib.js';

function mbps(bytes: number, ms: number): number {
  return bytes / 1e6 / (ms / 1000);
}

function rounds(n: number, fn: () => void): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    fn();
    out.push(performance.now() - t);
  }
  return out;
}

export const formatBenchmarks: Benchmark = {
  id: 'format',
  title: 'Format core: checksums and codec',
  async run(ctx) {
    const pageSize = 4096;
    const pages = ctx.quick ? 4096 : 16384;
    const image = randomBytes(pages * pageSize);
    const n = ctx.quick ? 5 : 15;
    const copyMs = rounds(n, () => Buffer.from(image));
    const dbMs = rounds(n, () => new DatabaseChecksum(pages).addImage(image, pageSize));
    const walMs = rounds(n, () => walChecksum(image, 0, image.length, false));
    const copyRate = mbps(image.length, median(copyMs));
    const copy = { name: 'memory copy of the same bytes', value: copyRate, unit: 'MB/s' };
    /** A throughput figure (median and p99 over the rounds) next to the memory-copy baseline. */
    const figure = (name: string, bytes: number, ms: number[], goal?: { text: string; min: number }): Figure => {
      const value = mbps(bytes, median(ms));
      return {
        name,
        value,
        p99: mbps(bytes, percentile(ms, 99)),
        unit: 'MB/s',
        ...(goal ? { goal: goal.text, met: value >= goal.min } : {}),
        baseline: copy,
        ratio: value / copyRate,
      };
    };
    const txnPages = Array.from({ length: 256 }, (_, i) => ({ pgno: i + 2, data: image.subarray(i * pageSize, (i + 1) * pageSize) }));
    const msg: Message = {
      type: MessageType.TXN,
      ns: 'bench',
      generation: '0'.repeat(32),
      txns: [{ seq: 1, commitSize: 300, checksum: '0'.repeat(16), commitTime: Date.now(), pages: txnPages }],
    };
    const frame = encodeMessage(msg);
    const codecMs = rounds(n * 4, () => decodeMessage(encodeMessage(msg)));
    const figures: Figure[] = [
      figure('database checksum (SHA-256 page hash, XOR), full image', image.length, dbMs, { text: '≥ 500 MB/s (start-up verification, issue 4)', min: 500 }),
      figure('WAL frame checksum (native byte order)', image.length, walMs),
      figure('codec round trip (encode + CRC + decode + validate), 1 MiB TXN', frame.length, codecMs),
    ];
    return {
      title: this.title,
      issue: 2,
      figures,
      notes: [`${pages} random pages of ${pageSize} bytes held in memory; median of ${n} rounds.`],
    };
  },
};
