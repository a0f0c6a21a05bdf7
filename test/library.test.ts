/**
 * Embedded as a library: the README's example, in one process (the primary
 * and the replica hold descriptors on different files, so the POSIX-lock
 * trap does not apply). The writer is still another process.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PrimaryDaemon } from '@walwire/primary';
import { ReplicaDaemon } from '@walwire/replica';
import { TEST_TOKEN as token, assertConverged, makeTempDir, runWriter, sqliteChecksum, useHarness } from './harness/index.js';

useHarness();

describe('library API', () => {
  it('PrimaryDaemon + ReplicaDaemon in one process; waitForSeq gives read-your-writes', async () => {
    const dir = makeTempDir();
    const db = join(dir, 'app.db');
    await runWriter({ db }, { mode: 'load', txns: 10, rowsPerTxn: 5, payloadBytes: 100, ratePerSec: 0 });
    const primary = await PrimaryDaemon.start({ dataDir: join(dir, 'p'), namespaces: { app: { path: db } }, port: 0, token });
    const replica = await ReplicaDaemon.start({
      dataDir: join(dir, 'r'),
      url: `ws://127.0.0.1:${primary.address.port}/v1/replicate`,
      namespaces: ['app'],
      token,
      httpPort: 0,
    });
    try {
      await runWriter({ db }, { mode: 'load', txns: 40, rowsPerTxn: 5, payloadBytes: 100, ratePerSec: 0 });
      const want = await sqliteChecksum(db);
      while (primary.primary.head('app').checksum !== want) await new Promise((r) => setTimeout(r, 20));
      const head = primary.primary.head('app');
      const position = await replica.waitForSeq('app', head.seq, { timeoutMs: 10_000, generation: head.generation });
      expect(position).toMatchObject({ generation: head.generation, appliedSeq: head.seq, checksum: head.checksum });
      await expect(replica.waitForSeq('app', head.seq + 1000, { timeoutMs: 30 })).rejects.toMatchObject({ code: 'WALWIRE_ERR_TIMEOUT' });
      await assertConverged({ primaryDb: db, replicaDb: join(dir, 'r', 'app', 'db.sqlite') });
      const status = primary.status() as { replicas: { namespaces: { ns: string; appliedSeq: number }[] }[] };
      expect(status.replicas).toHaveLength(1);
    } finally {
      await replica.stop();
      await primary.stop();
    }
  });
});
