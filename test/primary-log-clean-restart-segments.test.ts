/**
 * Regression (found by the chaos soak): after a clean stop, a reopened log
 * does not scan its sealed segments (only the last one), and it left their
 * size at the header's length instead of the file's. The first read of a
 * sealed segment then compared the scanned end with that wrong size and
 * threw WALWIRE_ERR_LOG_CORRUPT ("end at offset N, before the end of a
 * sealed segment"), so every replica resuming from a seq in an older
 * segment was refused, and reconnected, forever.
 */
import { join } from 'node:path';
import { readdirSync, statSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ReplicationLog, type WalPosition } from '@walwire/primary';
import { silentLogger } from '@walwire/runtime';
import { makeTempDir, useHarness } from './harness/index.js';

useHarness();

const PAGE = 1024;
const wal = (offset: number): WalPosition => ({ salt1: 7, salt2: 9, offset, chain: [offset, offset + 1] });
const checksum = (n: number): string => n.toString(16).padStart(16, '0');

describe('log segments after a clean restart', () => {
  it('a sealed segment that was not scanned at open is read back whole, with its real size', async () => {
    const dir = join(makeTempDir(), 'log');
    const open = (): Promise<ReplicationLog> => ReplicationLog.open({ dir, segmentBytes: 8 * 1024, logger: silentLogger() });
    const log = await open();
    await log.startGeneration({ generation: 'b'.repeat(32), checksum: checksum(0), commitSize: 1, pageSize: PAGE, wal: wal(32), reason: 'test' });
    for (let n = 1; n <= 40; n++) {
      await log.appendTxn({ commitSize: 2, checksum: checksum(n), commitTime: n, pages: [{ pgno: 2, data: new Uint8Array(PAGE).fill(n) }] }, 1, wal(32 + n * 100));
    }
    expect(log.segments.length).toBeGreaterThan(2);
    await log.close(); // clean: the next open scans only the last segment

    const again = await open();
    expect(again.recovery.unclean).toBe(false);
    expect(again.recovery.verifiedSegments).toBe(1);
    const records = await again.readRange(1);
    expect(records.map((r) => r.seq)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    expect(records.map((r) => (r.kind === 'txn' ? r.txn.pages[0]!.data[0] : -1))).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    // Sizes (retention counts them) are the files' sizes.
    const files = again.segments.map((s) => s.bytes);
    const onDisk = readdirSync(dir).filter((n) => n.endsWith('.wwlog')).sort().map((n) => statSync(join(dir, n)).size);
    expect(files).toEqual(onDisk);
    await again.close();
  });
});
