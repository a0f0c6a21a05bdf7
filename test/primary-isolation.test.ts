/**
 * Invariant 7: a namespace with a failing checkpoint or a corrupt WAL is
 * reported (degraded / failed, with a stable error code) while another
 * namespace of the same process keeps replicating.
 */
import { describe, expect, it } from 'vitest';
import { openSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { parseDatabaseHeader } from '@walwire/protocol';
import {
  PrimaryDaemon,
  StepWriter,
  imageChecksum,
  makeTempDir,
  readDatabaseSnapshot,
  spawnWriter,
  sqlite3Cli,
  useHarness,
} from './harness/index.js';

useHarness();

function twoDatabases(): { a: string; b: string; dataDir: string; pageSize: number } {
  const dir = makeTempDir();
  const a = join(dir, 'a.db');
  const b = join(dir, 'b.db');
  for (const db of [a, b]) sqlite3Cli(db, 'PRAGMA journal_mode=WAL; CREATE TABLE load(id INTEGER PRIMARY KEY, v BLOB);');
  return { a, b, dataDir: join(dir, 'data'), pageSize: parseDatabaseHeader(readDatabaseSnapshot(a)).pageSize };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('primary namespace isolation', () => {
  it('a failing checkpoint degrades only its namespace; both keep replicating and the other keeps checkpointing', async () => {
    const { a, b, dataDir, pageSize } = twoDatabases();
    const daemon = await PrimaryDaemon.start(
      {
        dataDir,
        namespaces: { a: { path: a }, b: { path: b } },
        checkpointPages: 20,
        degradedAfterErrors: 2,
        checkpointBackoffMs: 20,
        checkpointBackoffMaxMs: 50,
      },
      { WALWIRE_FAILPOINTS: 'primary.checkpoint.b=throw' },
    );
    await Promise.all([
      spawnWriter({ db: a }, { mode: 'load', txns: 400, rowsPerTxn: 2, payloadBytes: 200, ratePerSec: 0 }).succeeded(),
      spawnWriter({ db: b }, { mode: 'load', txns: 400, rowsPerTxn: 2, payloadBytes: 200, ratePerSec: 0 }).succeeded(),
    ]);
    await daemon.waitForChecksum('a', imageChecksum(readDatabaseSnapshot(a), pageSize));
    await daemon.waitForChecksum('b', imageChecksum(readDatabaseSnapshot(b), pageSize));
    for (let i = 0; i < 200 && !daemon.lines<{ ns: string; degraded: boolean }>('degraded').some((d) => d.ns === 'b' && d.degraded); i++) await sleep(10);
    expect(daemon.lines<{ ns: string; degraded: boolean }>('degraded')).toContainEqual(expect.objectContaining({ ns: 'b', degraded: true }));
    let status = await daemon.status();
    for (let i = 0; i < 100 && status.namespaces[0]!.checkpoint!.completed === 0; i++) {
      await sleep(100);
      status = await daemon.status();
    }
    const [sa, sb] = status.namespaces;
    expect(sb!.checkpoint).toMatchObject({ degraded: true });
    expect(sb!.checkpoint!.consecutiveErrors).toBeGreaterThanOrEqual(2);
    expect(sb!.checkpoint!.lastError).toContain('WALWIRE_ERR_FAILPOINT');
    expect(sb!.state).toBe('running');
    expect(sa!.checkpoint).toMatchObject({ degraded: false });
    expect(sa!.checkpoint!.completed, JSON.stringify(sa)).toBeGreaterThan(0);
    expect(daemon.child.stderr.some((l) => l.includes('checkpoint: namespace degraded') && l.includes('"ns":"b"'))).toBe(true);
    await daemon.stop();
  });

  it('a corrupt WAL fails its namespace with WALWIRE_ERR_WAL_FORMAT; the other keeps replicating', async () => {
    const { a, b, dataDir, pageSize } = twoDatabases();
    const daemon = await PrimaryDaemon.start({
      dataDir,
      namespaces: { a: { path: a }, b: { path: b } },
      walStallTimeoutMs: 200,
      namespaceRetryMs: 100,
    });
    const wa = await StepWriter.start(a);
    const wb = await StepWriter.start(b);
    await wa.exec('INSERT INTO load(v) VALUES (randomblob(100))');
    await wb.exec('INSERT INTO load(v) VALUES (randomblob(100))');
    await daemon.waitForChecksum('b', imageChecksum(readDatabaseSnapshot(b), pageSize));
    // Damage b's WAL header salts (the -wal file carries no locks).
    const fd = openSync(`${b}-wal`, 'r+');
    writeSync(fd, Buffer.from('deadbeefcafef00d', 'hex'), 0, 8, 16);
    closeSync(fd);
    await wb.exec('INSERT INTO load(v) VALUES (randomblob(100))');
    for (let i = 0; i < 300 && !daemon.lines<{ ns: string }>('nserror').some((e) => e.ns === 'b'); i++) await sleep(10);
    expect(daemon.lines<{ ns: string; code: string }>('nserror')).toContainEqual(expect.objectContaining({ ns: 'b', code: 'WALWIRE_ERR_WAL_FORMAT' }));
    for (let i = 0; i < 5; i++) {
      await wa.exec(`INSERT INTO load(v) VALUES (randomblob(${100 + i}))`);
      await daemon.waitForChecksum('a', imageChecksum(readDatabaseSnapshot(a), pageSize));
    }
    const status = await daemon.status();
    expect(status.namespaces[0]).toMatchObject({ name: 'a', state: 'running', lastError: null });
    expect(status.namespaces[1]).toMatchObject({ name: 'b', state: 'failed' });
    expect(status.namespaces[1]!.lastError).toContain('WALWIRE_ERR_WAL_FORMAT');
    await wa.close();
    await wb.close();
    await daemon.stop();
  });
});
