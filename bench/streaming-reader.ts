/**
 * Reader process for the streaming benchmarks (spawned by streaming-suite.ts).
 * argv[2]: JSON { db, table, idleUs, timeoutMs, busyTimeoutMs }.
 *
 * Opens the replica database read-only, like any application reader: either
 * with a busy timeout (SQLite's busy handler then sleeps 1, 2, 5 … 100 ms
 * between lock attempts inside the query), or with none (busyTimeoutMs 0:
 * SQLITE_BUSY comes back at once and the reader retries after idleUs). It polls `SELECT … WHERE id > last seen` in a loop;
 * when a poll finds nothing it sleeps `idleUs` (Atomics.wait, no spinning) so
 * that it leaves the 2 cores to the writer and the daemons. Each new row's
 * visibility time is taken (CLOCK_MONOTONIC, process.hrtime) right after the
 * poll that returned it; the suite subtracts the time the writer recorded
 * right after that row's commit returned. Stops at the row with last = 1, or
 * after timeoutMs.
 *
 * Prints "ready" once the database is open, then one JSON line:
 * { rows, lastSeen, done, polls, busy, maxPollMs, slowPolls (polls over 5 ms,
 * i.e. waits in SQLite's busy handler), ids, visible: [ms], stamped: [the
 * time stored in the row, ms] }.
 */
import Database from 'better-sqlite3';

interface Spec {
  readonly db: string;
  readonly table: string;
  readonly idleUs: number;
  readonly timeoutMs: number;
  /** SQLite busy timeout; 0 = fail at once and retry after idleUs. */
  readonly busyTimeoutMs: number;
}

const spec = JSON.parse(process.argv[2] ?? '{}') as Spec;
const db = new Database(spec.db, { readonly: true, timeout: spec.busyTimeoutMs });
const poll = db.prepare(`SELECT id, t, last FROM ${spec.table} WHERE id > ? ORDER BY id`).raw(true);
const pause = new Int32Array(new SharedArrayBuffer(4));
const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

process.stdout.write('ready\n');
const ids: number[] = [];
const visibleAt: number[] = [];
const stamped: number[] = [];
let lastSeen = 0;
let done = false;
let polls = 0;
let busy = 0;
let maxPollMs = 0;
let slowPolls = 0;
const deadline = performance.now() + spec.timeoutMs;
while (!done && performance.now() < deadline) {
  let rows: [number, number, number][];
  const pollStart = performance.now();
  try {
    rows = poll.all(lastSeen) as [number, number, number][];
  } catch (err) {
    const code = (err as { code?: string }).code ?? '';
    if (!code.startsWith('SQLITE_BUSY') && code !== 'SQLITE_READONLY_ROLLBACK') throw err;
    busy++;
    Atomics.wait(pause, 0, 0, spec.idleUs / 1000);
    continue;
  }
  const visible = nowMs();
  polls++;
  const pollMs = performance.now() - pollStart;
  if (pollMs > maxPollMs) maxPollMs = pollMs;
  if (pollMs > 5) slowPolls++;
  for (const [id, t, last] of rows) {
    ids.push(id);
    visibleAt.push(visible);
    stamped.push(t);
    lastSeen = id;
    if (last === 1) done = true;
  }
  if (rows.length === 0) Atomics.wait(pause, 0, 0, spec.idleUs / 1000);
}
db.close();
const r3 = (x: number): number => Math.round(x * 1000) / 1000;
process.stdout.write(
  `${JSON.stringify({ rows: ids.length, lastSeen, done, polls, busy, maxPollMs, slowPolls, ids, visible: visibleAt.map(r3), stamped: stamped.map(r3) })}\n`,
);
