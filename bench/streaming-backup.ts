/**
 * Baseline replicator for the streaming benchmarks (spawned by
 * streaming-suite.ts): what a Node user does today without walwire, a loop of
 * better-sqlite3 `db.backup(replicaPath)` from the primary database into the
 * replica file.
 * argv[2]: JSON { src, dest, intervalMs, pagesPerStep }.
 * - intervalMs: pause between the end of one backup and the start of the
 *   next (0 = back to back).
 * - pagesPerStep: pages copied per event-loop turn. better-sqlite3 copies 100
 *   by default; 0 here means all remaining pages in the second step (the
 *   first step is always 100 pages), which keeps a concurrent writer from
 *   restarting the copy.
 * Prints one JSON line per finished backup: { n, ms, restarts } (restarts:
 * times SQLite restarted the copy because the source changed under it), and
 * { n, inProgressMs, restarts } each second while one backup is unfinished.
 */
import Database from 'better-sqlite3';

interface Spec {
  readonly src: string;
  readonly dest: string;
  readonly intervalMs: number;
  readonly pagesPerStep: number;
}

const spec = JSON.parse(process.argv[2] ?? '{}') as Spec;
const src = new Database(spec.src, { timeout: 5000 });
let stopping = false;
process.on('SIGTERM', () => {
  stopping = true;
});

async function main(): Promise<void> {
  let n = 0;
  while (!stopping) {
    const start = performance.now();
    let restarts = 0;
    let lastRemaining = Number.POSITIVE_INFINITY;
    let lastReport = start;
    await src.backup(spec.dest, {
      progress: ({ remainingPages }) => {
        if (remainingPages > lastRemaining) restarts++;
        lastRemaining = remainingPages;
        if (performance.now() - lastReport > 1000) {
          lastReport = performance.now();
          process.stdout.write(`${JSON.stringify({ n, inProgressMs: lastReport - start, restarts })}\n`);
        }
        return spec.pagesPerStep > 0 ? spec.pagesPerStep : 1_000_000_000;
      },
    });
    n++;
    process.stdout.write(`${JSON.stringify({ n, ms: performance.now() - start, restarts })}\n`);
    if (spec.intervalMs > 0) await new Promise((r) => setTimeout(r, spec.intervalMs));
  }
  src.close();
}

main().catch((err: unknown) => {
  process.stderr.write(`${String(err)}\n`);
  process.exit(1);
});
