/**
 * Writer process for the primary benchmarks (spawned by primary-suite.ts).
 * argv[2]: JSON { db, txns, rowsPerTxn, payloadBytes, ratePerSec }.
 * Prints one JSON line: { elapsedMs, commitNs } where commitNs holds the
 * CLOCK_MONOTONIC time (process.hrtime.bigint, as a decimal string) right
 * after each commit when ratePerSec > 0, for commit-to-log latency.
 */
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';

interface Spec {
  db: string;
  txns: number;
  rowsPerTxn: number;
  payloadBytes: number;
  ratePerSec: number;
}

const spec = JSON.parse(process.argv[2] ?? '{}') as Spec;
const db = new Database(spec.db, { timeout: 30_000 });
db.pragma('journal_mode = WAL');
const insert = db.prepare('INSERT INTO bench(v) VALUES (?)');
const payload = randomBytes(spec.payloadBytes);
const txn = db.transaction(() => {
  for (let r = 0; r < spec.rowsPerTxn; r++) insert.run(payload);
});
const commitNs: string[] = [];
const pause = new Int32Array(new SharedArrayBuffer(4));

function main(): void {
  const start = performance.now();
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < spec.txns; i++) {
    txn();
    if (spec.ratePerSec > 0) {
      commitNs.push(process.hrtime.bigint().toString());
      const due = start + ((i + 1) * 1000) / spec.ratePerSec;
      // Atomics.wait sleeps with sub-millisecond precision and no spinning,
      // so the writer leaves the CPU to the daemon between commits.
      const wait = due - performance.now();
      if (wait > 0) Atomics.wait(pause, 0, 0, wait);
    }
  }
  const elapsedMs = performance.now() - start;
  const cpu = process.cpuUsage(cpu0);
  db.close();
  process.stdout.write(`${JSON.stringify({ elapsedMs, cpuMs: (cpu.user + cpu.system) / 1000, systemMs: cpu.system / 1000, commitNs })}\n`);
}

main();
