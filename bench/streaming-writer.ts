/**
 * Writer process for the streaming benchmarks (spawned by streaming-suite.ts).
 * argv[2]: JSON spec, one of
 * - { mode: 'rows', db, table, ratePerSec, seconds, padBytes }: commits one
 *   row per transaction at ratePerSec (0 = as fast as it can) for `seconds`,
 *   then one last row with last = 1, into a fresh table (ids from 1). Each
 *   transaction is BEGIN IMMEDIATE; INSERT; COMMIT, and the row holds `t`,
 *   the time (CLOCK_MONOTONIC in ms, process.hrtime, shared by every process
 *   on the machine) taken inside the transaction, after the write lock is
 *   held; `committed[id - 1]` in the output is the time after COMMIT
 *   returned (which includes any auto-checkpoint SQLite ran in that call).
 * - { mode: 'bulk', db, mbPerSec, seconds, rowBytes, ringRows }: replaces
 *   rows of a ring of `ringRows` rows with fresh `rowBytes` blobs, paced to
 *   mbPerSec of row bytes, so the WAL sees that rate of page writes while the
 *   database stays the size of the ring.
 * Prints one JSON line: { commits, elapsedMs, bytes[, committed] }.
 */
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';

interface RowsSpec {
  readonly mode: 'rows';
  readonly db: string;
  readonly table: string;
  readonly ratePerSec: number;
  readonly seconds: number;
  readonly padBytes: number;
}

interface BulkSpec {
  readonly mode: 'bulk';
  readonly db: string;
  readonly mbPerSec: number;
  readonly seconds: number;
  readonly rowBytes: number;
  readonly ringRows: number;
}

const spec = JSON.parse(process.argv[2] ?? '{}') as RowsSpec | BulkSpec;
const db = new Database(spec.db, { timeout: 30_000 });
db.pragma('journal_mode = WAL');
const pause = new Int32Array(new SharedArrayBuffer(4));
const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

/** Sleeps until `due` (performance.now() ms) without spinning; returns at once when late. */
function sleepUntil(due: number): void {
  const wait = due - performance.now();
  if (wait > 0) Atomics.wait(pause, 0, 0, wait);
}

function rows(s: RowsSpec): { commits: number; elapsedMs: number; bytes: number; committed: number[] } {
  const insert = db.prepare(`INSERT INTO ${s.table}(t, last, pad) VALUES (?, ?, ?)`);
  const pad = randomBytes(s.padBytes);
  const start = performance.now();
  const end = start + s.seconds * 1000;
  const count = s.ratePerSec > 0 ? Math.round(s.ratePerSec * s.seconds) : Number.POSITIVE_INFINITY;
  let commits = 0;
  const committed: number[] = [];
  // BEGIN IMMEDIATE first, so the stamp comes after any wait for the write
  // lock; the commit follows within microseconds of it. The time after
  // COMMIT returns is reported apart: it also covers the auto-checkpoint
  // that SQLite runs in the committing call, after the commit is visible.
  const txn = db.transaction((last: number) => Number(insert.run(nowMs(), last, pad).lastInsertRowid));
  const commit = (last: number): void => {
    const id = txn.immediate(last);
    committed[id - 1] = nowMs();
    commits++;
  };
  while (commits < count && performance.now() < end + (s.ratePerSec > 0 ? 60_000 : 0)) {
    commit(0);
    if (s.ratePerSec > 0) sleepUntil(start + (commits * 1000) / s.ratePerSec);
  }
  commit(1);
  const r3 = (x: number): number => Math.round(x * 1000) / 1000;
  return { commits, elapsedMs: performance.now() - start, bytes: commits * s.padBytes, committed: committed.map(r3) };
}

function bulk(s: BulkSpec): { commits: number; elapsedMs: number; bytes: number } {
  db.exec('CREATE TABLE IF NOT EXISTS big(id INTEGER PRIMARY KEY, b BLOB)');
  const put = db.prepare('INSERT OR REPLACE INTO big(id, b) VALUES (?, ?)');
  // A pool of random bytes; each row is a slice at a random offset, so no two
  // rows carry the same pages and nothing compresses.
  const pool = randomBytes(16 * 1024 * 1024 + s.rowBytes);
  const bytesPerMs = (s.mbPerSec * 1e6) / 1000;
  const start = performance.now();
  const end = start + s.seconds * 1000;
  let commits = 0;
  while (performance.now() < end) {
    const at = Math.floor(Math.random() * (pool.length - s.rowBytes));
    put.run(commits % s.ringRows, pool.subarray(at, at + s.rowBytes));
    commits++;
    sleepUntil(start + (commits * s.rowBytes) / bytesPerMs);
  }
  return { commits, elapsedMs: performance.now() - start, bytes: commits * s.rowBytes };
}

const result = spec.mode === 'rows' ? rows(spec) : bulk(spec);
db.close();
process.stdout.write(`${JSON.stringify(result)}\n`);
