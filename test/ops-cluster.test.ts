/**
 * scripts/cluster.mjs runs the docker-compose.yml topology (a primary, two
 * replicas, the writer service) as plain processes. Run briefly, both
 * replicas converge page-exact with the primary database.
 */
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { assertConverged, makeTempDir, spawnCommand, useHarness } from './harness/index.js';

useHarness();

const CLUSTER = fileURLToPath(new URL('../scripts/cluster.mjs', import.meta.url));

describe('scripts/cluster.mjs', () => {
  it('runs a primary, two replicas and the writer; both replicas converge', async () => {
    const dir = makeTempDir();
    const child = spawnCommand(process.execPath, [CLUSTER, '--seconds', '3', '--rate', '100', '--dir', dir]);
    await child.succeeded(60_000);
    const line = child.lines.find((l) => l.includes('"msg":"converged"'));
    expect(line, child.lines.join('\n')).toBeDefined();
    const result = JSON.parse(line!) as { head: { seq: number }; replicas: { appliedSeq: number }[] };
    expect(result.head.seq).toBeGreaterThan(10);
    expect(result.replicas.map((r) => r.appliedSeq)).toEqual([result.head.seq, result.head.seq]);
    for (const replica of ['replica1', 'replica2']) {
      await assertConverged({ primaryDb: join(dir, 'primary', 'app.db'), replicaDb: join(dir, replica, 'app', 'db.sqlite') });
    }
  });
});
