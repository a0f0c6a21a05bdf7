/**
 * Regression (found by the chaos soak): one failed replication-log append (a
 * write or fsync error; failpoint `primary.log.append=throw`) latched the
 * log as failed, and the namespace's retry ran `#establish` on that same
 * log, which failed again on the latch, forever (backoff up to 30 s), until
 * the primary process restarted. Now the retry reopens the log first:
 * unacknowledged bytes are cut off, appends resume at the last durable seq,
 * and the namespace recovers with a new generation.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ReplicationLog, type LogRecord, type WalPosition } from '@walwire/primary';
import { parseDatabaseHeader } from '@walwire/protocol';
import { armFailpoint, disarmAllFailpoints, silentLogger } from '@walwire/runtime';
import { PrimaryDaemon, StepWriter, imageChecksum, makeTempDir, readDatabaseSnapshot, readPrimaryLog, sqlite3Cli, useHarness } from './harness/index.js';

useHarness();

const PAGE = 1024;
const wal = (offset: number): WalPosition => ({ salt1: 7, salt2: 9, offset, chain: [offset, offset + 1] });
const checksum = (n: number): string => n.toString(16).padStart(16, '0');
const append = (log: ReplicationLog, n: number, fill: number): Promise<LogRecord> =>
  log.appendTxn({ commitSize: 2, checksum: checksum(n), commitTime: 1000 + n, pages: [{ pgno: 2, data: new Uint8Array(PAGE).fill(fill) }] }, 1, wal(32 + n * 100));

describe('a failed log append does not fail the namespace for good', () => {
  it('ReplicationLog.reopen: cuts the unacknowledged tail and appends again from the last durable seq', async () => {
    const dir = join(makeTempDir(), 'log');
    armFailpoint('primary.log.append', 'throw@2');
    try {
      const log = await ReplicationLog.open({ dir, segmentBytes: 1024 * 1024, logger: silentLogger() });
      await log.startGeneration({ generation: 'a'.repeat(32), checksum: checksum(0), commitSize: 1, pageSize: PAGE, wal: wal(32), reason: 'test' });
      expect((await append(log, 1, 1)).seq).toBe(1);
      // Written, then the "fsync" fails: rejected, and the log is latched.
      await expect(append(log, 2, 2)).rejects.toMatchObject({ code: 'WALWIRE_ERR_FAILPOINT' });
      expect(log.failed).toBe(true);
      expect(() => append(log, 3, 3)).toThrow(expect.objectContaining({ code: 'WALWIRE_ERR_FAILPOINT' }));
      await log.reopen();
      expect(log.failed).toBe(false);
      expect(log.head?.seq).toBe(1);
      // The seq the failed append had reserved is reused: no gap.
      expect((await append(log, 2, 9)).seq).toBe(2);
      await log.close();
      const again = await ReplicationLog.open({ dir, segmentBytes: 1024 * 1024, logger: silentLogger() });
      const records = await again.readRange(1);
      expect(records.map((r) => r.seq)).toEqual([1, 2]);
      const second = records[1]!;
      expect(second.kind === 'txn' ? second.txn.pages[0]!.data[0] : undefined).toBe(9);
      expect(again.recovery.discardedBytes).toBe(0);
      await again.close();
    } finally {
      disarmAllFailpoints();
    }
  });

  it('primary: after primary.log.append=throw the namespace recovers (new generation) and captures every later commit', async () => {
    const dir = makeTempDir();
    const db = join(dir, 'app.db');
    sqlite3Cli(db, 'PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);');
    const options = { dataDir: join(dir, 'data'), namespaces: { app: { path: db } }, namespaceRetryMs: 100 };
    const primary = await PrimaryDaemon.start(options, { WALWIRE_FAILPOINTS: 'primary.log.append=throw@2' });
    const writer = await StepWriter.start(db);
    // One commit at a time, each captured before the next, until the second append fails.
    for (let i = 0; primary.lines('nserror').length === 0; i++) {
      if (i > 200) throw new Error('the failpoint never fired');
      await writer.exec(`INSERT INTO t(v) VALUES ('before ${i}')`);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(primary.lines<{ code: string }>('nserror')[0]!.code).toBe('WALWIRE_ERR_FAILPOINT');
    const recovered = await primary.child.waitForLine(/^generation .*recovering after an error/, 20_000);
    expect(JSON.parse(recovered.slice('generation '.length))).toMatchObject({ ns: 'app' });
    for (let i = 0; i < 5; i++) await writer.exec(`INSERT INTO t(v) VALUES ('after ${i}')`);
    await writer.close();
    const image = readDatabaseSnapshot(db);
    await primary.waitForChecksum('app', imageChecksum(image, parseDatabaseHeader(image).pageSize));
    const status = await primary.status();
    expect(status.namespaces.find((n) => n.name === 'app')).toMatchObject({ state: 'running' });
    await primary.stop();
    // The log on disk is whole and contiguous.
    const contents = await readPrimaryLog(options.dataDir, 'app');
    expect(contents.records.map((r) => r.seq)).toEqual(contents.records.map((_, i) => contents.firstSeq + i));
  });
});
