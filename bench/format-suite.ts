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
    const figures: Figure[] = [];
    const dbRate = mbps(image.length, median(dbMs));
    figures.push({
      name: 'database checksum (SHA-256 page hash, XOR), full image',
      value: dbRate,
      p99: mbps(image.length, percentile(dbMs, 99)),
      unit: 'MB/s',
      goal: '≥ 500 MB/s (start-up verification, issue 4)',
      met: dbRate >= 500,
      baseline: { name: 'memory copy of the same bytes', value: copyRate, unit: 'MB/s' },
      ratio: dbRate / copyRate,
    });
    const walRate = mbps(image.length, median(walMs));
    figures.push({
      name: 'WAL frame checksum (native byte order)',
      value: walRate,
      p99: mbps(image.length, percentile(walMs, 99)),
      unit: 'MB/s',
      baseline: { name: 'memory copy of the same bytes', value: copyRate, unit: 'MB/s' },
      ratio: walRate / copyRate,
    });
    const txnPages = Array.from({ length: 256 }, (_, i) => ({ pgno: i + 2, data: image.subarray(i * pageSize, (i + 1) * pageSize) }));
    const msg: Message = {
      type: MessageType.TXN,
      ns: 'bench',
      generation: '0'.repeat(32),
      txns: [{ seq: 1, commitSize: 300, checksum: '0'.repeat(16), commitTime: Date.now(), pages: txnPages }],
    };
    const frame = encodeMessage(msg);
    const codecMs = rounds(n * 4, () => decodeMessage(encodeMessage(msg)));
    const codecRate = mbps(frame.length, median(codecMs));
    figures.push({
      name: 'codec round trip (encode + CRC + decode + validate), 1 MiB TXN',
      value: codecRate,
      p99: mbps(frame.length, percentile(codecMs, 99)),
      unit: 'MB/s',
      baseline: { name: 'memory copy of the same bytes', value: copyRate, unit: 'MB/s' },
      ratio: codecRate / copyRate,
    });
    return {
      title: this.title,
      issue: 2,
      figures,
      notes: [`${pages} random pages of ${pageSize} bytes held in memory; median of ${n} rounds.`],
    };
  },
};
