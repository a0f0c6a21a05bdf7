/**
 * Primary figures (issue 3):
 * - writer throughput with the daemon tailing / without it, at 1, 10 and 100
 *   rows per transaction (goal ≥ 0.9); the writer is a separate process and
 *   the daemon (library) runs in this one, alternating runs on fresh
 *   databases;
 * - commit-to-log latency at 1,000 commits/s (goal p50 ≤ 1 ms, p99 ≤ 5 ms):
 *   from the writer's commit returning to the record being durable in the
 *   log (event emitted after fdatasync), both stamped with CLOCK_MONOTONIC.
 *   Baseline: one 4 KiB write + fdatasync on the same disk.
 */
import Database from 'better-sqlite3';
import { execFile } from 'node:child_process';
import { closeSync, fdatasyncSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Primary } from '@walwire/primary';
import { type BenchContext, type Benchmark, type Figure, flushDirtyPages, median, percentile } from './lib.js';

const run = promisify(execFile);

/**
 * While tuning: WALWIRE_BENCH_PRIMARY_OPTIONS (JSON) is merged into the
 * Primary options of every run here (e.g. '{"checkpointPages":4000}'); the
 * section names it when set.
 */
const TUNING = process.env['WALWIRE_BENCH_PRIMARY_OPTIONS'];
const tuning = (): Record<string, unknown> => (TUNING === undefined ? {} : (JSON.parse(TUNING) as Record<string, unknown>));
const WRITER = fileURLToPath(new URL('./primary-writer.js', import.meta.url));

interface WriterResult {
  readonly elapsedMs: number;
  readonly commitNs: readonly string[];
}

function createDb(path: string): void {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE bench(id INTEGER PRIMARY KEY, v BLOB)');
  db.close();
}

async function runWriter(spec: { db: string; txns: number; rowsPerTxn: number; payloadBytes: number; ratePerSec: number }): Promise<WriterResult> {
  const { stdout } = await run(process.execPath, [WRITER, JSON.stringify(spec)], { maxBuffer: 256 * 1024 * 1024 });
  return JSON.parse(stdout) as WriterResult;
}

async function throughput(ctx: BenchContext, rows: number, withDaemon: boolean, txns: number): Promise<number> {
  const dir = ctx.tmpDir();
  const db = join(dir, 'bench.db');
  createDb(db);
  const primary = withDaemon ? await Primary.start({ ...tuning(), dataDir: join(dir, 'data'), namespaces: { bench: { path: db } } }) : undefined;
  try {
    const r = await runWriter({ db, txns, rowsPerTxn: rows, payloadBytes: 100, ratePerSec: 0 });
    return txns / (r.elapsedMs / 1000);
  } finally {
    await primary?.stop();
  }
}

function fsyncBaseline(ctx: BenchContext, n: number): number[] {
  const fd = openSync(join(ctx.tmpDir(), 'fsync.bin'), 'w');
  const page = Buffer.alloc(4096, 7);
  const out: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const t = performance.now();
      writeSync(fd, page, 0, page.length, i * 4096);
      fdatasyncSync(fd);
      out.push(performance.now() - t);
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

/**
 * One latency round: a fresh primary, then the writer at 1,000 commits/s for
 * `warmupSeconds` + `seconds`. Samples of commits in the first
 * `warmupSeconds` (the daemon just started: JIT tiers, heap growth, the
 * checkpoint worker's start) are returned apart from the steady state.
 */
async function latency(ctx: BenchContext, warmupSeconds: number, seconds: number): Promise<{ warmup: number[]; samples: number[]; seqs: number; commits: number }> {
  const dir = ctx.tmpDir();
  const db = join(dir, 'latency.db');
  createDb(db);
  const primary = new Primary({ ...tuning(), dataDir: join(dir, 'data'), namespaces: { bench: { path: db } } });
  const logged: { commits: number; at: bigint }[] = [];
  let cumulative = 0;
  primary.on('record', ({ record }) => {
    const at = process.hrtime.bigint();
    if (record.kind !== 'txn') return;
    cumulative += record.commits;
    logged.push({ commits: cumulative, at });
  });
  await primary.start();
  const txns = 1000 * (warmupSeconds + seconds);
  let result: WriterResult;
  try {
    result = await runWriter({ db, txns, rowsPerTxn: 1, payloadBytes: 100, ratePerSec: 1000 });
    const deadline = Date.now() + 10_000;
    while (cumulative < txns && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  } finally {
    await primary.stop();
  }
  const warmup: number[] = [];
  const samples: number[] = [];
  let j = 0;
  for (let k = 0; k < result.commitNs.length; k++) {
    while (j < logged.length && logged[j]!.commits < k + 1) j++;
    const rec = logged[j];
    if (rec === undefined) break;
    (k < 1000 * warmupSeconds ? warmup : samples).push(Number(rec.at - BigInt(result.commitNs[k]!)) / 1e6);
  }
  return { warmup, samples, seqs: logged.length, commits: cumulative };
}

export const primaryBenchmarks: Benchmark = {
  id: 'primary',
  title: 'Primary: WAL capture into the replication log',
  async run(ctx) {
    const figures: Figure[] = [];
    const notes: string[] = [];
    const rounds = ctx.quick ? 1 : 5;
    // Warm-up (page cache, JIT, worker start-up), not measured.
    await throughput(ctx, 1, true, 2000);
    for (const rows of [1, 10, 100]) {
      const txns = Math.round((ctx.quick ? 6000 : 20000) / Math.sqrt(rows));
      const alone: number[] = [];
      const tailed: number[] = [];
      for (let r = 0; r < rounds; r++) {
        alone.push(await throughput(ctx, rows, false, txns));
        tailed.push(await throughput(ctx, rows, true, txns));
      }
      const base = median(alone);
      const withDaemon = median(tailed);
      const ratio = withDaemon / base;
      ctx.log(`throughput ${rows} rows/txn: alone ${base.toFixed(0)} txn/s, tailed ${withDaemon.toFixed(0)} txn/s`);
      figures.push({
        name: `writer throughput with daemon tailing / without, ${rows} row${rows === 1 ? '' : 's'}/txn`,
        value: ratio,
        unit: '×',
        goal: '≥ 0.9',
        met: ratio >= 0.9,
        baseline: { name: 'writer alone', value: base, unit: 'txn/s' },
        ratio,
        note: `with the daemon ${withDaemon.toFixed(0)} txn/s; ${txns} txns of ${rows} × 100-byte rows, median of ${rounds} alternating run(s) on fresh databases`,
      });
    }
    const seconds = ctx.quick ? 2 : 4;
    const warmupSeconds = ctx.quick ? 2 : 4;
    const latRounds = ctx.quick ? 1 : 3;
    const perRound: { p50: number; p99: number; warmupP99: number; seqs: number; n: number }[] = [];
    for (let r = 0; r < latRounds; r++) {
      flushDirtyPages();
      const l = await latency(ctx, warmupSeconds, seconds);
      perRound.push({ p50: median(l.samples), p99: percentile(l.samples, 99), warmupP99: percentile(l.warmup, 99), seqs: l.seqs, n: l.samples.length + l.warmup.length });
      ctx.log(`latency round ${r + 1}: p50 ${perRound.at(-1)!.p50.toFixed(2)} ms, p99 ${perRound.at(-1)!.p99.toFixed(2)} ms (first ${warmupSeconds} s after start: p99 ${perRound.at(-1)!.warmupP99.toFixed(2)} ms)`);
    }
    const warmupP99 = median(perRound.map((r) => r.warmupP99));
    const totalSeqs = perRound.reduce((n, r) => n + r.seqs, 0);
    const totalCommits = perRound.reduce((n, r) => n + r.n, 0);
    const fsync = fsyncBaseline(ctx, ctx.quick ? 200 : 1000);
    const p50 = median(perRound.map((r) => r.p50));
    const p99 = median(perRound.map((r) => r.p99));
    const fsyncP50 = median(fsync);
    figures.push({
      name: 'commit-to-log latency p50 at 1,000 commits/s',
      value: p50,
      p99,
      unit: 'ms',
      goal: '≤ 1 ms',
      met: p50 <= 1,
      baseline: { name: '4 KiB write + fdatasync, same disk (p50)', value: fsyncP50, unit: 'ms' },
      ratio: p50 / fsyncP50,
      note: `median over ${latRounds} round(s) of ${seconds} s (${totalCommits} commits in ${totalSeqs} seqs); per round p50/p99: ${perRound.map((r) => `${r.p50.toFixed(2)}/${r.p99.toFixed(2)}`).join(', ')} ms; p99 of the baseline ${percentile(fsync, 99).toFixed(2)} ms`,
    });
    figures.push({
      name: 'commit-to-log latency p99 at 1,000 commits/s',
      value: p99,
      unit: 'ms',
      goal: '≤ 5 ms',
      met: p99 <= 5,
      baseline: { name: '4 KiB write + fdatasync, same disk (p99)', value: percentile(fsync, 99), unit: 'ms' },
      ratio: p99 / percentile(fsync, 99),
    });
    figures.push({
      name: `commit-to-log latency p99 at 1,000 commits/s, first ${warmupSeconds} s after the daemon starts`,
      value: warmupP99,
      unit: 'ms',
      baseline: { name: 'the steady state that follows (p99)', value: p99, unit: 'ms' },
      ratio: warmupP99 / p99,
      note: `per round: ${perRound.map((r) => r.warmupP99.toFixed(2)).join(', ')} ms; the goal figures above are the steady state that follows`,
    });
    notes.push(
      'Throughput: the writer is its own process (better-sqlite3, WAL mode, default auto-checkpoint); "with the daemon" runs the primary library in the benchmark process on the same 2 cores, tailing, logging with fdatasync and checkpointing at its defaults.',
      `Latency: in each round a fresh primary starts and the writer commits 1 row every 1 ms for ${warmupSeconds + seconds} s, stamping each commit with process.hrtime.bigint() (CLOCK_MONOTONIC, shared by processes); the primary stamps the record event, emitted after the log's fdatasync. A seq may hold several commits; each commit is charged the time until its seq was durable. The goal figures are the steady state: the commits of the last ${seconds} s, medians of the rounds' p50 and p99. The commits of the first ${warmupSeconds} s after the daemon starts are reported apart: there the first checkpoint starts its worker thread, V8 compiles the hot paths and grows its young generation, and slow commits come in clusters (a 16 s probe gave p99 7.8 and 5.5 ms in its first two 2-second windows and 1.3–3.3 ms in the six after). Until commit ecd2959 the goal figures were taken from the first 4 s after start, with no warm-up. Each round starts after sync(1), so the files the throughput runs wrote are not written back by the kernel in the middle of it (that stalled every fdatasync of the third round for over 50 ms, p99 58–66 ms, in two runs).`,
      'The machine is a shared 2-core VM on which other work runs at the same time; repeated runs of this suite have given 1-row ratios from 0.85 to 0.98 (since the WAL tailer reuses its read buffer) and single latency rounds with a p99 over 60 ms (a stall of the disk or the CPU for 100 ms or more), so single figures carry that much noise; the goal figures are medians over rounds for that reason.',
    );
    if (TUNING !== undefined) notes.push(`Tuning run: WALWIRE_BENCH_PRIMARY_OPTIONS=${TUNING} (not the defaults).`);
    return { title: this.title, issue: 3, figures, notes };
  },
};
