/**
 * kill -9 of the replica applier at 50+ points, by failpoint and at random
 * times, while a separate reader process loops over the invariants the
 * writer keeps (constant sum of balances, monotonic row count). The reader
 * must never see a violation, and after every restart the replica must be
 * page-exact with SQLite's own image of the source at the recovered seq.
 *
 * One capture (a bank workload in a real writer process) feeds every round;
 * each round restarts the applier child on the same data directory.
 */
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { existsSync, statSync, unlinkSync } from 'node:fs';
import Database from 'better-sqlite3';
import {
  captureSource,
  diffImages,
  integrityCheck,
  journalIsHot,
  makeTempDir,
  readReplicaImage,
  saveTxns,
  spawnFixture,
  spawnInvariantReader,
  sqliteImageAt,
  useHarness,
  type CapturedSource,
  type Child,
} from './harness/index.js';

useHarness();

const FAILPOINTS = [
  'replica.apply.after-pending-cursor',
  'replica.apply.after-journal-body',
  'replica.apply.after-journal',
  'replica.apply.mid-pages',
  'replica.apply.before-journal-zero',
  'replica.apply.after-commit-before-cursor',
  'replica.apply.after-cursor',
] as const;

/** Deterministic PRNG so a failing run can be replayed (seed printed on failure). */
function rng(seed: number): (n: number) => number {
  let s = seed >>> 0;
  return (n) => {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    return s % n;
  };
}

interface Recovered {
  readonly seq: number;
  readonly checksum: string;
  readonly decision: string;
  readonly journal: boolean;
  readonly state: string;
}

/** A temp data directory for the replica-applier fixture, and the captured txns saved where it reads them. */
function applierRun(source: CapturedSource, prefix: string): { txnsFile: string; dataDir: string; dbPath: string } {
  const dir = makeTempDir(prefix);
  const txnsFile = join(dir, 'txns.json');
  saveTxns(txnsFile, source.txns);
  const dataDir = join(dir, 'data');
  return { txnsFile, dataDir, dbPath: join(dataDir, 'main', 'db.sqlite') };
}

function parseRecovered(line: string): Recovered {
  const m = /recovered seq=(\d+) checksum=([0-9a-f]{16}) decision=(\S+) journal=(true|false) verifyMs=\S+ state=(\S+)/.exec(line);
  if (m === null) throw new Error(`bad recovered line: ${line}`);
  return { seq: Number(m[1]), checksum: m[2]!, decision: m[3]!, journal: m[4] === 'true', state: m[5]! };
}

async function expectPageExact(source: CapturedSource, dbPath: string, seq: number, round: string): Promise<void> {
  const got = readReplicaImage(dbPath);
  if (seq === 0) {
    expect(got.length, `${round}: empty replica at seq 0`).toBe(0);
    return;
  }
  const want = await sqliteImageAt(source, seq);
  const diff = diffImages(want, got);
  expect(diff.sizes[1], `${round}: page count at seq ${seq}`).toBe(diff.sizes[0]);
  expect(diff.pages, `${round}: pages differing from SQLite's image at seq ${seq}`).toEqual([]);
}

describe('replica crash safety (kill -9)', () => {
  it('survives 56 kills by failpoint (7 points) and at random, readers never see a torn state, every restart is page-exact', async () => {
    const seed = Number(process.env['WALWIRE_TEST_SEED'] ?? Date.now() % 100000);
    const rand = rng(seed);
    const source = await captureSource({ bank: { accounts: 400, txns: 1200, seed, padBytes: 100 } });
    const last = source.txns[source.txns.length - 1]!.seq;
    const { txnsFile, dataDir, dbPath } = applierRun(source, 'walwire-crash-');

    const spawnApplier = (batch: number, failpoints: string, pauseMs?: number): Child =>
      spawnFixture('replica-applier', [JSON.stringify({ dataDir, txnsFile, batch, pauseMs })], { env: { WALWIRE_FAILPOINTS: failpoints } });

    let reader: Child | undefined;
    const decisions = new Map<string, number>();
    const kills = { failpoint: 0, random: 0 };
    let journalsRolledBack = 0;
    let prevSeq = 0;
    const rounds = 56;
    let fpRounds = 0;
    for (let round = 0; round < rounds; round++) {
      const batch = 1 + rand(6);
      const useFailpoint = round % 7 !== 6; // 48 by failpoint (8 at each), 8 at random times
      const fp = FAILPOINTS[(useFailpoint ? fpRounds++ : 0) % FAILPOINTS.length]!;
      // Random-time rounds slow the page writes (1 ms a run) so that the kill
      // often lands mid-pages and any reader that could get past the lock
      // would see a torn state.
      const spec = useFailpoint ? `${fp}=kill@${1 + rand(fp === 'replica.apply.mid-pages' ? 12 : 4)}` : 'replica.apply.mid-pages=delay(1)';
      const label = `seed ${seed} round ${round} (${useFailpoint ? spec : 'random'}, batch ${batch})`;
      // after-cursor fires in the deferred post-commit cursor write, which
      // runs when the applier goes idle: pause between calls for it.
      const child = spawnApplier(batch, spec, (useFailpoint && fp === 'replica.apply.after-cursor') || round % 3 === 0 ? 2 : undefined);
      const rec = parseRecovered(await child.waitForLine(/^recovered /, 30_000));
      decisions.set(rec.decision, (decisions.get(rec.decision) ?? 0) + 1);
      if (rec.journal) journalsRolledBack++;
      expect(rec.state, label).toBe('ready');
      expect(rec.seq, `${label}: the applied seq never goes backwards`).toBeGreaterThanOrEqual(prevSeq);
      if (rec.seq > 0) expect(rec.checksum, label).toBe(source.txns[rec.seq - 1]!.checksum);
      expect(journalIsHot(dbPath), `${label}: hot journal rolled back at start`).toBe(false);
      await expectPageExact(source, dbPath, rec.seq, label);
      prevSeq = rec.seq;
      if (reader === undefined) {
        reader = spawnInvariantReader(dbPath, 10_000);
        await reader.waitForLine(/^ready/);
      }
      child.process.stdin!.write('go\n');
      if (!useFailpoint) {
        await new Promise((r) => setTimeout(r, 5 + rand(150)));
        await child.kill9();
        kills.random++;
      } else {
        const timer = setTimeout(() => child.process.kill('SIGKILL'), 60_000);
        const status = await child.exited;
        clearTimeout(timer);
        expect(child.lines.some((l) => l.startsWith('done')), `${label}: the failpoint should kill the applier before the end`).toBe(false);
        expect(status.signal, `${label}: ${child.stderr.slice(-3).join(' | ')}`).toBe('SIGKILL');
        kills.failpoint++;
      }
      expect(child.lines.filter((l) => l.startsWith('violation')), label).toEqual([]);
    }
    expect(kills.failpoint + kills.random).toBeGreaterThanOrEqual(50);

    // Final restart without failpoints: recover, catch up, converge.
    const final = spawnApplier(16, '');
    const rec = parseRecovered(await final.waitForLine(/^recovered /, 30_000));
    await expectPageExact(source, dbPath, rec.seq, 'final restart');
    const reachedByKills = rec.seq;
    final.process.stdin!.write('go\n');
    await final.waitForLine(/^done /, 60_000);
    await final.succeeded();
    await expectPageExact(source, dbPath, last, 'final');
    expect(integrityCheck(dbPath)).toBe('ok');

    reader!.process.kill('SIGTERM');
    const summary = await reader!.waitForLine(/^checks /, 30_000);
    await reader!.exited;
    expect(reader!.lines.filter((l) => l.startsWith('violation')), `seed ${seed}`).toEqual([]);
    const checks = Number(/checks (\d+)/.exec(summary)![1]);
    expect(checks, 'the reader really ran its checks throughout').toBeGreaterThan(200);
    // Each recovery path was really exercised.
    expect(decisions.get('committed-pending') ?? 0, 'restarts after commit, before the cursor write').toBeGreaterThan(0);
    expect(decisions.get('at-cursor') ?? 0).toBeGreaterThan(0);
    expect(journalsRolledBack, 'restarts that found a hot journal').toBeGreaterThan(0);
    console.log(`seed ${seed}: kills ${JSON.stringify(kills)}, decisions ${JSON.stringify(Object.fromEntries(decisions))}, journals ${journalsRolledBack}, reader ${summary}, seq ${reachedByKills} after the kills, final seq ${last}`);
  }, 240_000);

  it.each([4096, 512, 65536])('leaves a hot journal that read-only readers refuse until the restarted daemon rolls it back (page size %i)', async (pageSize) => {
    const source = await captureSource({ bank: { accounts: 100, txns: 40, padBytes: 40 }, pageSize });
    const { txnsFile, dataDir, dbPath } = applierRun(source, 'walwire-hot-');
    await spawnFixture('replica-applier', [JSON.stringify({ dataDir, txnsFile, batch: 5, untilSeq: 20, autoGo: true })]).succeeded();
    const killed = spawnFixture('replica-applier', [JSON.stringify({ dataDir, txnsFile, batch: 10, autoGo: true })], {
      env: { WALWIRE_FAILPOINTS: 'replica.apply.mid-pages=kill@1' },
    });
    expect((await killed.exited).signal).toBe('SIGKILL');
    expect(journalIsHot(dbPath)).toBe(true);
    const readOnly = (): number => {
      const db = new Database(dbPath, { readonly: true, fileMustExist: true, timeout: 1000 });
      try {
        return (db.prepare('SELECT count(*) AS n FROM journal_rows').get() as { n: number }).n;
      } finally {
        db.close();
      }
    };
    expect(readOnly).toThrow(expect.objectContaining({ code: 'SQLITE_READONLY_ROLLBACK' }));
    const restarted = spawnFixture('replica-applier', [JSON.stringify({ dataDir, txnsFile, batch: 10, untilSeq: 20 })]);
    const rec = parseRecovered(await restarted.waitForLine(/^recovered /));
    expect(rec).toMatchObject({ seq: 20, journal: true, decision: 'at-cursor', state: 'ready' });
    expect(journalIsHot(dbPath)).toBe(false);
    await expectPageExact(source, dbPath, 20, 'after rollback');
    expect(readOnly()).toBe(readOnlyRowsAt(source, 20));
    await restarted.kill9();
  });
});

describe('replica crash during the very first batch', () => {
  it('rolls an interrupted first batch back to an empty database (journal of zero records, original size 0)', async () => {
    const source = await captureSource({ bank: { accounts: 50, txns: 5 } });
    const { txnsFile, dataDir, dbPath } = applierRun(source, 'walwire-first-');
    const killed = spawnFixture('replica-applier', [JSON.stringify({ dataDir, txnsFile, batch: 100, autoGo: true })], {
      env: { WALWIRE_FAILPOINTS: 'replica.apply.before-journal-zero=kill@1' },
    });
    expect((await killed.exited).signal).toBe('SIGKILL');
    expect(readReplicaImage(dbPath).length, 'pages written before the kill').toBeGreaterThan(0);
    expect(journalIsHot(dbPath)).toBe(true);
    const restarted = spawnFixture('replica-applier', [JSON.stringify({ dataDir, txnsFile, batch: 100 })]);
    const rec = parseRecovered(await restarted.waitForLine(/^recovered /));
    expect(rec).toMatchObject({ seq: 0, journal: true, decision: 'at-cursor', state: 'ready' });
    expect(readReplicaImage(dbPath).length).toBe(0);
    restarted.process.stdin!.write('go\n');
    await restarted.waitForLine(/^done /);
    await restarted.succeeded();
    await expectPageExact(source, dbPath, source.txns.length, 'after the first batch');
  });
});

describe('the lock after the commit point', () => {
  it('is released before the journal sync and the cursor write: a reader with no busy timeout sees the batch while they run (regression: readers waited for both under the lock)', async () => {
    const source = await captureSource({ bank: { accounts: 50, txns: 40 } });
    const { txnsFile, dataDir, dbPath } = applierRun(source, 'walwire-unlock-');
    // The failpoint runs after the journal sync, before cursor record 2: a 5 s window.
    const applier = spawnFixture('replica-applier', [JSON.stringify({ dataDir, txnsFile, batch: 1000, autoGo: true })], {
      env: { WALWIRE_FAILPOINTS: 'replica.apply.after-commit-before-cursor=delay(5000)@1' },
    });
    const expected = readOnlyRowsAt(source, source.txns.length);
    const deadline = Date.now() + 30_000;
    let rows = -1;
    let busy = 0;
    while (rows !== expected && Date.now() < deadline && !applier.lines.some((l) => l.startsWith('done'))) {
      if (existsSync(dbPath) && !journalIsHot(dbPath)) {
        let db: Database.Database | undefined;
        try {
          db = new Database(dbPath, { readonly: true, timeout: 0 });
          rows = (db.prepare('SELECT count(*) AS n FROM journal_rows').get() as { n: number }).n;
        } catch (err) {
          const code = (err as { code?: string }).code;
          if (code === 'SQLITE_BUSY') busy++;
          else if (!/no such table/.test((err as Error).message)) throw err;
        } finally {
          db?.close();
        }
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    const finishedFirst = applier.lines.some((l) => l.startsWith('done'));
    expect(finishedFirst, `the applier finished before a reader could see the batch (${busy} SQLITE_BUSY answers)`).toBe(false);
    expect(rows).toBe(expected);
    await applier.waitForLine(/^done /, 30_000);
    await applier.succeeded();
    await expectPageExact(source, dbPath, source.txns.length, 'after the batch');
  });
});

describe('replica crash inside the kept journal file\'s own steps', () => {
  /** Opens the replica read-only, as any reader would, and counts `table`'s rows (throws SQLITE_READONLY_ROLLBACK on a hot journal). */
  const countRows = (dbPath: string, table: string): number => {
    const db = new Database(dbPath, { readonly: true, fileMustExist: true, timeout: 1000 });
    try {
      return (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
    } finally {
      db.close();
    }
  };

  it('a kill inside the reopen of a journal file removed while unlocked leaves no hot journal, and the restart continues page-exact', async () => {
    const source = await captureSource({ bank: { accounts: 100, txns: 40, padBytes: 40 } });
    const { txnsFile, dataDir, dbPath } = applierRun(source, 'walwire-reopen-');
    await spawnFixture('replica-applier', [JSON.stringify({ dataDir, txnsFile, batch: 5, untilSeq: 20, autoGo: true })]).succeeded();
    // Reopen hit 1 is recovery's; hit 2 is the apply's, under the lock, after the file was removed.
    const killed = spawnFixture('replica-applier', [JSON.stringify({ dataDir, txnsFile, batch: 5 })], {
      env: { WALWIRE_FAILPOINTS: 'replica.journal.reopen=kill@2' },
    });
    expect(parseRecovered(await killed.waitForLine(/^recovered /))).toMatchObject({ seq: 20, state: 'ready' });
    // What a read-write SQLite opener does with a journal that is not hot.
    unlinkSync(`${dbPath}-journal`);
    killed.process.stdin!.write('go\n');
    expect((await killed.exited).signal).toBe('SIGKILL');
    expect(existsSync(`${dbPath}-journal`), 'the reopen recreated the file before the kill').toBe(true);
    expect(journalIsHot(dbPath)).toBe(false);
    expect(countRows(dbPath, 'journal_rows')).toBe(readOnlyRowsAt(source, 20));
    await expectPageExact(source, dbPath, 20, 'after the kill');
    const restarted = spawnFixture('replica-applier', [JSON.stringify({ dataDir, txnsFile, batch: 5, autoGo: true })]);
    expect(parseRecovered(await restarted.waitForLine(/^recovered /))).toMatchObject({ seq: 20, journal: false, decision: 'at-cursor', state: 'ready' });
    await restarted.succeeded();
    await expectPageExact(source, dbPath, source.txns.length, 'after the restart');
  });

  it('a kill inside the cut-back of a journal grown past 4 MiB leaves the committed batch, no hot journal, and the next large batch applies', async () => {
    // seq 1 base, 2 table, 3 insert 1,600 rows of 4,000 bytes (about 6.4 MB),
    // 4 and 5 rewrite every row: each journals about 1,600 original pages.
    const fill = 'WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1600) INSERT INTO big(b) SELECT randomblob(4000) FROM n';
    const source = await captureSource({ statements: ['CREATE TABLE big(id INTEGER PRIMARY KEY, b BLOB)', fill, 'UPDATE big SET b = randomblob(4000)', 'UPDATE big SET b = randomblob(4000)'] });
    expect(source.txns.length).toBe(5);
    const { txnsFile, dataDir, dbPath } = applierRun(source, 'walwire-cut-');
    await spawnFixture('replica-applier', [JSON.stringify({ dataDir, txnsFile, batch: 1, untilSeq: 3, autoGo: true })]).succeeded();
    const killed = spawnFixture('replica-applier', [JSON.stringify({ dataDir, txnsFile, batch: 1, untilSeq: 4, autoGo: true })], {
      env: { WALWIRE_FAILPOINTS: 'replica.journal.cut=kill@1' },
    });
    expect((await killed.exited).signal).toBe('SIGKILL');
    expect(statSync(`${dbPath}-journal`).size, 'killed before the truncate').toBeGreaterThan(4 * 1024 * 1024);
    // The header was durably zero before the cut began: seq 4 is committed and nothing is hot.
    expect(journalIsHot(dbPath)).toBe(false);
    expect(countRows(dbPath, 'big')).toBe(1600);
    await expectPageExact(source, dbPath, 4, 'after the kill');
    const restarted = spawnFixture('replica-applier', [JSON.stringify({ dataDir, txnsFile, batch: 1, autoGo: true })]);
    expect(parseRecovered(await restarted.waitForLine(/^recovered /))).toMatchObject({ seq: 4, journal: false, decision: 'committed-pending', state: 'ready' });
    await restarted.succeeded();
    await expectPageExact(source, dbPath, 5, 'after the next large batch');
    expect(statSync(`${dbPath}-journal`).size, 'cut back after the next large batch').toBe(68 * 1024);
    expect(journalIsHot(dbPath)).toBe(false);
  });
});

/** Rows in journal_rows at `seq`: one per transfer after the three set-up seqs. */
function readOnlyRowsAt(source: CapturedSource, seq: number): number {
  const offset = source.txns.length - 40; // 40 transfers, after table and account set-up
  return Math.max(0, seq - offset);
}
