/**
 * GET /v1/status on both daemons carries what an operator needs at a
 * glance: role, generation, head (primary) or applied/durable (replica),
 * lag, degraded/diverged/gap flags, and the replicas per namespace.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeTempDir, replicationUrl, runWriter, startPrimaryProcess, startReplicaProcess, useHarness, waitForCatchUp } from './harness/index.js';

useHarness();

describe('GET /v1/status', () => {
  it('primary: head, degraded, replicas with acknowledged positions and lag; replica: positions and flags', async () => {
    const dir = makeTempDir();
    const db = join(dir, 'app.db');
    await runWriter({ db }, { mode: 'load', txns: 50, rowsPerTxn: 5, payloadBytes: 200, ratePerSec: 0 });
    const primary = await startPrimaryProcess({ dataDir: join(dir, 'p'), dbs: { app: db } });
    const replica = await startReplicaProcess({ dataDir: join(dir, 'r'), url: replicationUrl(primary.port), namespaces: ['app'], args: ['--replica-id', 'r-one'] });
    const seq = await waitForCatchUp(primary, replica, 'app', db);
    const head = (await primary.get('/v1/namespaces/app/head')).body;
    let p: Record<string, unknown> = {};
    for (let i = 0; i < 100; i++) {
      p = (await primary.get('/v1/status')).body;
      const ns = (p['namespaces'] as { replicas: { appliedSeq: number }[] }[])[0]!;
      if (ns.replicas[0]?.appliedSeq === seq) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(p['role']).toBe('primary');
    expect((p['namespaces'] as unknown[])[0]).toMatchObject({
      role: 'primary',
      name: 'app',
      state: 'running',
      generation: head['generation'],
      head: { generation: head['generation'], seq, checksum: head['checksum'] },
      degraded: false,
      replicas: [{ replica: 'r-one', mode: 'stream', appliedSeq: seq, durableSeq: seq, lagSeqs: 0, lagBytes: 0, lagMs: 0 }],
    });
    const r = (await replica.get('/v1/status')).body;
    expect(r['role']).toBe('replica');
    expect((r['namespaces'] as unknown[])[0]).toMatchObject({
      role: 'replica',
      ns: 'app',
      generation: head['generation'],
      appliedSeq: seq,
      durableSeq: seq,
      degraded: false,
      diverged: false,
      gap: false,
      gapSeq: null,
      lag: { queuedTxns: 0, queuedBytes: 0 },
    });
    // Bootstrap progress, once done, may stay listed at 100 %.
    const bootstrap = ((r['namespaces'] as { bootstrap: { percent: number } | null }[])[0]!).bootstrap;
    expect(bootstrap === null || bootstrap.percent === 100).toBe(true);
  });
});
