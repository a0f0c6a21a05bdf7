/**
 * A snapshot image damaged on the primary's disk (a flipped byte, as bit rot
 * or a stray write would leave it). Before the fix every bootstrap failed at
 * the damaged chunk and the replica retried forever; now the primary closes
 * the connection with WALWIRE_ERR_SNAPSHOT_DAMAGED before sending that
 * chunk, rebuilds the image from its database, and the replica's next
 * attempt converges. Real processes; the damage is written with fs into the
 * image file, which only the daemon's bootstrap path reads.
 */
import { closeSync, openSync, readSync, readdirSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  assertConverged,
  makeTempDir,
  replicationUrl,
  runWriter,
  spawnWriter,
  startPrimaryProcess,
  startReplicaProcess,
  useHarness,
  waitForCatchUp,
} from './harness/index.js';

useHarness();

const MiB = 1024 * 1024;

function images(dir: string): string[] {
  return readdirSync(dir).filter((n) => n.endsWith('.img'));
}

describe('damaged snapshot image', () => {
  it('is rebuilt from the database when a bootstrap finds a chunk that fails its stored CRC, and the replica converges (regression: it retried forever)', async () => {
    const dir = makeTempDir();
    const db = join(dir, 'app.db');
    await runWriter({ db }, { mode: 'load', txns: 20, rowsPerTxn: 100, payloadBytes: 2000, ratePerSec: 0 }); // ~4 MiB
    const dataDir = join(dir, 'p');
    const primary = await startPrimaryProcess({ dataDir, dbs: { app: db }, args: ['--snapshot-chunk-bytes', String(MiB)] });
    const snapshots = join(dataDir, 'app', 'snapshots');
    const [damaged] = images(snapshots);
    expect(damaged, 'the image written at start-up').toBeDefined();
    const path = join(snapshots, damaged!);
    expect(statSync(path).size).toBeGreaterThan(2 * MiB);
    // One byte of chunk 1 (of 1 MiB chunks) flipped.
    const at = MiB + 12_345;
    const fd = openSync(path, 'r+');
    const byte = Buffer.alloc(1);
    readSync(fd, byte, 0, 1, at);
    byte[0] = byte[0]! ^ 0x40;
    writeSync(fd, byte, 0, 1, at);
    closeSync(fd);

    // Writes go on while the image is found damaged and rebuilt.
    const writer = spawnWriter({ db }, { mode: 'load', txns: 300, rowsPerTxn: 2, payloadBytes: 300, ratePerSec: 150 });
    const replica = await startReplicaProcess({ dataDir: join(dir, 'r'), url: replicationUrl(primary.port), namespaces: ['app'] });
    await writer.succeeded();
    await waitForCatchUp(primary, replica, 'app', db, 60_000);
    await assertConverged({ primaryDb: db, replicaDb: join(dir, 'r', 'app', 'db.sqlite') });

    const logs = primary.child.lines.map((l) => {
      try {
        return JSON.parse(l) as { msg?: string; err?: string; generation?: string };
      } catch {
        return {};
      }
    });
    const found = logs.find((l) => l.msg === 'snapshot image damaged; rebuilding it from the database');
    expect(found?.err).toMatch(/chunk 1 of \d+: damaged on disk/);
    const rebuilt = logs.find((l) => l.msg === 'snapshot image rebuilt');
    // The log still proved continuity with the database: same generation, no forced bootstrap of other replicas.
    expect(rebuilt?.generation).toBe(found?.generation);
    expect(logs.some((l) => l.msg === 'new generation' && l.generation !== found?.generation)).toBe(false);
    // The replica was told why its first attempt ended.
    expect(replica.child.lines.some((l) => l.includes('WALWIRE_ERR_SNAPSHOT_DAMAGED'))).toBe(true);
    expect(images(snapshots).length).toBe(1);
  });

  it('is found damaged by its database checksum when it stores no CRCs for the chunk size in use, rebuilt, and the replica converges (regression: CRCs computed from the damaged image vouched for it)', async () => {
    const dir = makeTempDir();
    const db = join(dir, 'app.db');
    await runWriter({ db }, { mode: 'load', txns: 20, rowsPerTxn: 100, payloadBytes: 2000, ratePerSec: 0 }); // ~4 MiB
    const dataDir = join(dir, 'p');
    const first = await startPrimaryProcess({ dataDir, dbs: { app: db }, args: ['--snapshot-chunk-bytes', String(MiB)] });
    await first.child.terminate();
    const snapshots = join(dataDir, 'app', 'snapshots');
    const [damaged] = images(snapshots);
    expect(damaged, 'the image written at start-up').toBeDefined();
    const at = 2 * MiB + 777;
    const fd = openSync(join(snapshots, damaged!), 'r+');
    const byte = Buffer.alloc(1);
    readSync(fd, byte, 0, 1, at);
    byte[0] = byte[0]! ^ 0x08;
    writeSync(fd, byte, 0, 1, at);
    closeSync(fd);

    // Restarted with another chunk size: the image's stored CRCs (1 MiB chunks) do not apply.
    const primary = await startPrimaryProcess({ dataDir, dbs: { app: db }, args: ['--snapshot-chunk-bytes', String(2 * MiB)] });
    const replica = await startReplicaProcess({ dataDir: join(dir, 'r'), url: replicationUrl(primary.port), namespaces: ['app'] });
    await waitForCatchUp(primary, replica, 'app', db, 60_000);
    await assertConverged({ primaryDb: db, replicaDb: join(dir, 'r', 'app', 'db.sqlite') });
    const found = primary.child.lines
      .map((l) => {
        try {
          return JSON.parse(l) as { msg?: string; err?: string };
        } catch {
          return {};
        }
      })
      .find((l) => l.msg === 'snapshot image damaged; rebuilding it from the database');
    expect(found?.err).toMatch(/stores no chunk CRCs for chunks of \d+ pages: damaged on disk/);
    expect(images(snapshots).length).toBe(1);
  });
});
