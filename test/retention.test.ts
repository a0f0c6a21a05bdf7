/**
 * Log retention with real processes: the log is kept for a recently seen
 * replica (it resumes without a bootstrap), and a replica offline past the
 * size limit bootstraps again by itself, with the reason logged.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { assertConverged, makeTempDir, replicationUrl, runWriter, startPrimaryProcess, startReplicaProcess, useHarness, waitForCatchUp } from './harness/index.js';

useHarness();

const SMALL_SEGMENTS = ['--segment-bytes', '65536', '--retention-interval-ms', '100'];

async function setup(retentionArgs: string[]) {
  const dir = makeTempDir();
  const db = join(dir, 'app.db');
  await runWriter({ db }, { mode: 'load', txns: 5, rowsPerTxn: 5, payloadBytes: 100, ratePerSec: 0 });
  const primary = await startPrimaryProcess({ dataDir: join(dir, 'p'), dbs: { app: db }, args: [...SMALL_SEGMENTS, ...retentionArgs] });
  const start = () => startReplicaProcess({ dataDir: join(dir, 'r'), url: replicationUrl(primary.port), namespaces: ['app'] });
  let replica = await start();
  await waitForCatchUp(primary, replica, 'app', db);
  // About 1 MiB of log while the replica is connected: segments it has applied can go.
  await runWriter({ db }, { mode: 'load', txns: 100, rowsPerTxn: 2, payloadBytes: 4000, ratePerSec: 500 });
  await waitForCatchUp(primary, replica, 'app', db);
  await new Promise((r) => setTimeout(r, 300)); // the ACKs reach the retention pass
  const offlineAt = ((await primary.get('/v1/namespaces/app/head')).body['seq']) as number;
  await replica.child.terminate();
  // Offline: about 2 MiB of log in 64 KiB segments.
  await runWriter({ db }, { mode: 'load', txns: 200, rowsPerTxn: 2, payloadBytes: 4000, ratePerSec: 500 });
  await new Promise((r) => setTimeout(r, 500));
  const status = await primary.get('/v1/status');
  const firstSeq = (status.body['namespaces'] as { firstSeq: number }[])[0]!.firstSeq;
  replica = await start();
  await waitForCatchUp(primary, replica, 'app', db);
  await assertConverged({ primaryDb: db, replicaDb: join(dir, 'r', 'app', 'db.sqlite') });
  return { primary, replica, firstSeq, offlineAt };
}

describe('log retention', () => {
  it('keeps the log for a recently seen replica: it resumes from its cursor, no bootstrap', async () => {
    const { replica, firstSeq, offlineAt } = await setup(['--retention-max-bytes', String(64 * 1024 * 1024), '--replica-ttl-ms', '600000']);
    expect(firstSeq).toBeLessThanOrEqual(offlineAt + 1); // kept what the offline replica needs
    expect(firstSeq).toBeGreaterThan(1); // and dropped what it had applied
    expect(replica.child.lines.some((l) => l.includes('primary requires a snapshot'))).toBe(false);
  });

  it('a replica offline past the size limit bootstraps again by itself, and says why', async () => {
    const { primary, replica, firstSeq, offlineAt } = await setup(['--retention-max-bytes', String(256 * 1024), '--replica-ttl-ms', '600000']);
    expect(firstSeq).toBeGreaterThan(offlineAt + 1);
    expect(replica.child.lines.some((l) => /primary requires a snapshot.*behind retention|behind retention.*primary requires a snapshot/.test(l))).toBe(true);
    expect(primary.child.lines.some((l) => l.includes('"msg":"log truncated"') && l.includes('size or age limit'))).toBe(true);
  });
});
