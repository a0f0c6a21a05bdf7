/**
 * kill -9 of the primary at the failpoints of the log append (before and
 * after its fdatasync) and of the checkpoint, with a writer running on:
 * after a restart no committed transaction is missing, no seq is
 * duplicated, and every acknowledged seq is unchanged.
 */
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { parseDatabaseHeader } from '@walwire/protocol';
import {
  PrimaryDaemon,
  diffImages,
  imageChecksum,
  makeTempDir,
  readDatabaseSnapshot,
  readPrimaryLog,
  rebuildFromLog,
  spawnWriter,
  sqlite3Cli,
  useHarness,
} from './harness/index.js';

useHarness();

const CASES = [
  { failpoint: 'primary.log.append=kill@6', checkpointPages: 100000 },
  { failpoint: 'primary.log.append.after-sync=kill@6', checkpointPages: 100000 },
  { failpoint: 'primary.checkpoint=kill@2', checkpointPages: 40 },
] as const;

describe('primary crash recovery', () => {
  it.each(CASES)('kill -9 at $failpoint: nothing missing, nothing duplicated', async ({ failpoint, checkpointPages }) => {
    const dir = makeTempDir();
    const db = join(dir, 'crash.db');
    const dataDir = join(dir, 'data');
    sqlite3Cli(db, 'PRAGMA journal_mode=WAL; CREATE TABLE load(id INTEGER PRIMARY KEY, v BLOB);');
    const base = readDatabaseSnapshot(db);
    const pageSize = parseDatabaseHeader(base).pageSize;
    const options = { dataDir, namespaces: { load: { path: db } }, checkpointPages };
    const first = PrimaryDaemon.spawn(options, { WALWIRE_FAILPOINTS: failpoint });
    await first.child.waitForLine(/^ready /);
    const TXNS = 300;
    // Paced so the writer still holds the WAL when the second daemon starts:
    // had it finished first, its close would delete the WAL and continuity
    // could not be proven (a new generation, tested elsewhere).
    const writer = spawnWriter({ db }, { mode: 'load', txns: TXNS, rowsPerTxn: 1, payloadBytes: 100, ratePerSec: 100 });
    const died = await first.child.exited;
    expect(died.signal).toBe('SIGKILL');
    const acknowledged = first.records('load');
    const generation = first.generations('load')[0]!.generation;

    const duringCheckpoint = failpoint.startsWith('primary.checkpoint');
    if (duringCheckpoint) await writer.succeeded();
    const second = await PrimaryDaemon.start(options);
    await writer.succeeded();
    const final = readDatabaseSnapshot(db);
    if (duringCheckpoint && second.generations('load').length > 0) {
      // The daemon died after a checkpoint let SQLite restart the WAL, and the
      // writer restarted it while nothing pinned it: continuity cannot be
      // proven, so a new generation starts exactly at the current state.
      const gen = second.generations('load')[0]!;
      expect(gen.reason).toMatch(/salts changed|WAL is missing/);
      expect(gen.checksum).toBe(imageChecksum(final, pageSize));
      await second.stop();
      return;
    }
    await second.waitForChecksum('load', imageChecksum(final, pageSize));
    await second.stop();
    // The writer kept the WAL, so continuity is proven: same generation.
    expect(second.generations('load')).toEqual([]);
    expect(second.child.stderr.some((l) => l.includes('unclean shutdown detected'))).toBe(true);

    const contents = await readPrimaryLog(dataDir, 'load');
    expect(contents.generation).toBe(generation);
    // rebuildFromLog throws on a seq gap or duplicate and checks every seq's checksum.
    const rebuilt = rebuildFromLog(base, contents);
    expect(diffImages(rebuilt, final).pages).toEqual([]);
    const commits = contents.records.reduce((n, r) => n + (r.kind === 'txn' ? r.commits : 0), 0);
    expect(commits).toBe(TXNS);
    for (const a of acknowledged) {
      const r = contents.records[a.seq - 1]!;
      expect(r.seq).toBe(a.seq);
      expect(r.kind === 'txn' ? r.txn.checksum : null).toBe(a.checksum);
    }
  });
});
