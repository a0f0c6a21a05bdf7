/**
 * reset-replication (issue #8): the primary's part (write lock, checkpoint,
 * quick_check, new generation with its snapshot image) at 20,000 rows, and
 * the time until two connected replicas have bootstrapped the new
 * generation. Baseline in the same run: what an operator does without it,
 * deleting the namespace everywhere and creating it again (a full
 * bootstrap of both replicas).
 */
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { type Benchmark, type Figure, median, percentile } from './lib.js';
import { type Daemon, killAll, startPrimary, startReplica } from './streaming-proc.js';

const ROWS = 20_000;

function makeDatabase(path: string): void {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL, payload BLOB NOT NULL)');
  const insert = db.prepare('INSERT INTO items(name, payload) VALUES (?, ?)');
  db.transaction(() => {
    for (let i = 0; i < ROWS; i++) insert.run(`item-${i}`, randomBytes(100));
  })();
  db.close();
}

async function call(d: Daemon, method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const res = await fetch(`http://127.0.0.1:${d.port}${path}`, {
    method,
    headers: { authorization: `Bearer ${d.token}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const json = (await res.json()) as Record<string, unknown>;
  if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status} ${JSON.stringify(json)}`);
  return json;
}

/** Waits until every replica applied the primary's head (of its current generation). */
async function converged(primary: Daemon, replicas: readonly Daemon[]): Promise<void> {
  const head = await call(primary, 'GET', '/v1/namespaces/app/head');
  await Promise.all(replicas.map((r) => call(r, 'GET', `/v1/namespaces/app/wait?seq=${String(head['seq'])}&generation=${String(head['generation'])}&timeoutMs=60000`)));
}

export const operationsBenchmarks: Benchmark = {
  id: 'operations',
  title: 'Operations: reset-replication',
  async run(ctx) {
    const dir = ctx.tmpDir();
    const db = join(dir, 'app.db');
    makeDatabase(db);
    const token = randomBytes(8).toString('hex');
    const resets = ctx.quick ? 8 : 30;
    const recreates = ctx.quick ? 3 : 8;
    const resetPrimaryMs: number[] = [];
    const resetEndToEndMs: number[] = [];
    const recreatePrimaryMs: number[] = [];
    const recreateEndToEndMs: number[] = [];
    const daemons: Daemon[] = [];
    try {
      const primary = await startPrimary({ dataDir: join(dir, 'p'), db, token });
      const replicas = [
        await startReplica({ dataDir: join(dir, 'r1'), primaryPort: primary.port, token }),
        await startReplica({ dataDir: join(dir, 'r2'), primaryPort: primary.port, token }),
      ];
      daemons.push(primary, ...replicas);
      await converged(primary, replicas);
      // One warm-up of each, not counted.
      await call(primary, 'POST', '/v1/namespaces/app/reset-replication');
      await converged(primary, replicas);
      for (let i = 0; i < Math.max(resets, recreates); i++) {
        if (i < resets) {
          const started = performance.now();
          const res = await call(primary, 'POST', '/v1/namespaces/app/reset-replication');
          resetPrimaryMs.push(res['elapsed_ms'] as number);
          await converged(primary, replicas);
          resetEndToEndMs.push(performance.now() - started);
        }
        if (i < recreates) {
          // Baseline: remove on the replicas, delete and create on the
          // primary, add on the replicas again: a full bootstrap of both.
          const started = performance.now();
          for (const r of replicas) await call(r, 'DELETE', '/v1/namespaces/app');
          const primaryStarted = performance.now();
          await call(primary, 'DELETE', '/v1/namespaces/app');
          await call(primary, 'POST', '/v1/namespaces', { name: 'app', path: db });
          recreatePrimaryMs.push(performance.now() - primaryStarted);
          for (const r of replicas) await call(r, 'POST', '/v1/namespaces', { name: 'app' });
          await converged(primary, replicas);
          recreateEndToEndMs.push(performance.now() - started);
        }
      }
      for (const r of replicas) await r.proc.stop();
      await primary.proc.stop();
    } catch (err) {
      for (const d of daemons) {
        ctx.log(`${d.proc.name} (running ${String(d.proc.running)}): ${d.proc.lines.slice(-5).join('\n')}\n${d.proc.stderr.slice(-10).join('\n')}`);
      }
      throw err;
    } finally {
      killAll();
    }
    const p95 = (xs: number[]): number => percentile(xs, 95);
    const figures: Figure[] = [
      {
        name: `reset-replication, primary's part, p95 (${ROWS.toLocaleString('en')} rows, 2 replicas connected)`,
        value: p95(resetPrimaryMs),
        unit: 'ms',
        p99: percentile(resetPrimaryMs, 99),
        goal: '≤ 100 ms',
        met: p95(resetPrimaryMs) <= 100,
        baseline: { name: 'delete + create the namespace on the primary, p95', value: p95(recreatePrimaryMs), unit: 'ms' },
        ratio: p95(resetPrimaryMs) / p95(recreatePrimaryMs),
        note: `median ${median(resetPrimaryMs).toFixed(1)} ms`,
      },
      {
        name: 'reset-replication until both replicas converged (bootstrap of the new generation), median',
        value: median(resetEndToEndMs),
        unit: 'ms',
        p99: percentile(resetEndToEndMs, 99),
        baseline: { name: 'remove + delete + create + add again, full bootstrap of both replicas, median', value: median(recreateEndToEndMs), unit: 'ms' },
        ratio: median(resetEndToEndMs) / median(recreateEndToEndMs),
      },
    ];
    return {
      title: this.title,
      issue: 8,
      figures,
      notes: [
        `${resets} resets and ${recreates} delete/create rounds, interleaved, after one warm-up of each, on a ${ROWS.toLocaleString('en')}-row database (about ${((ROWS * 130) / 1e6).toFixed(1)} MB) with two replicas streaming it. The primary's part is the elapsed_ms the endpoint reports: wait for a running checkpoint, write lock, log the last commits, PASSIVE checkpoint in a worker, quick_check in a worker thread, remove the snapshot images, read and checksum the database, start the generation and write its snapshot image. End to end adds the HTTP round trip and both replicas' bootstrap (stream, stage, verify, install).`,
        'The baseline is what an operator does without reset-replication: remove the namespace on both replicas, delete and create it on the primary (a new generation from the database), and add it on the replicas again; its primary part counts only the DELETE and the POST on the primary.',
      ],
    };
  },
};
