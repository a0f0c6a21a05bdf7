/**
 * Replication lag over time (issue #9): a write burst into the primary, two
 * replicas, and two faults mid-burst: the connection of replica A is cut
 * (through a proxy), and replica B is killed with kill -9 and restarted a
 * second later. Writes docs/lag-chart.svg (bench/svg-chart.ts) and the
 * figures below it. Run alone with `npm run bench -- --only lag`.
 *
 * Lag, sampled every 50 ms from the bench process: the age of the oldest
 * transaction committed on the primary that the replica does not show yet,
 * 0 when the replica shows every committed one. The writer stamps each row
 * with a CLOCK_MONOTONIC time inside its transaction (streaming-writer.ts),
 * the sampler reads the newest row id visible on the replica database
 * (read-only, as any reader would) and the stamp of the next row on the
 * primary database. Both reads use SQLite, never the daemons' own figures,
 * so a dead replica's lag keeps growing on the chart.
 *
 * Baseline on the same burst and chart: a loop of better-sqlite3
 * `db.backup()` of the primary database into a file (streaming-backup.ts,
 * what a Node user does without walwire), sampled the same way.
 */
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Benchmark, type Figure, median, percentile } from './lib.js';
import { type Daemon, Proc, ThrottleProxy, benchScript, killAll, runScript, sleep, startPrimary, startReplica, waitCaughtUp } from './streaming-proc.js';
import { renderLineChart } from './svg-chart.js';

const SAMPLE_MS = 50;
const RATE = 400;
const PAD_BYTES = 200;
const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

/** Reads the newest row id on a replica database; undefined while it cannot be read (absent, hot journal after a kill). */
class ReplicaProbe {
  #db: Database.Database | undefined;
  /** busyMs: how long a sample waits for a lock (a replica's apply holds it briefly; the backup loop for a whole copy). */
  constructor(
    readonly path: string,
    readonly busyMs = 150,
  ) {}

  newestId(): number | undefined {
    try {
      if (this.#db === undefined) {
        if (!existsSync(this.path)) return undefined;
        this.#db = new Database(this.path, { readonly: true, fileMustExist: true, timeout: this.busyMs });
      }
      const row = this.#db.prepare('SELECT max(id) AS id FROM burst').get() as { id: number | null } | undefined;
      return row?.id ?? 0;
    } catch {
      // Busy (an apply holds the lock), the table not there yet, or a hot
      // journal left by kill -9: reopen at the next sample.
      this.close();
      return undefined;
    }
  }

  close(): void {
    this.#db?.close();
    this.#db = undefined;
  }
}

export const lagBenchmarks: Benchmark = {
  id: 'lag',
  title: 'Replication lag over time: write burst, connection cut, replica kill -9',
  async run(ctx) {
    const dir = ctx.tmpDir();
    const db = join(dir, 'app.db');
    const init = new Database(db);
    init.pragma('journal_mode = WAL');
    init.exec('CREATE TABLE burst(id INTEGER PRIMARY KEY, t REAL NOT NULL, last INTEGER NOT NULL, pad BLOB)');
    // 10 MB of other data, as in the streaming suite's lag figures: what a
    // backup copies each time (walwire ships only the pages that change).
    init.exec('CREATE TABLE filler(id INTEGER PRIMARY KEY, v BLOB)');
    const fill = init.prepare('INSERT INTO filler(v) VALUES (randomblob(4000))');
    init.transaction(() => {
      for (let i = 0; i < 2500; i++) fill.run();
    })();
    init.close();
    const token = randomBytes(8).toString('hex');
    const seconds = ctx.quick ? 8 : 14;
    const cutAt = seconds * 0.3;
    const killAt = seconds * 0.55;
    const downMs = 1000;
    const daemons: Daemon[] = [];
    const primary = await startPrimary({ dataDir: join(dir, 'p'), db, token });
    daemons.push(primary);
    const proxy = await ThrottleProxy.start(primary.port);
    try {
      const replicaA = await startReplica({ dataDir: join(dir, 'ra'), primaryPort: proxy.port, token });
      let replicaB = await startReplica({ dataDir: join(dir, 'rb'), primaryPort: primary.port, token });
      daemons.push(replicaA, replicaB);
      await waitCaughtUp(primary, replicaA, 30_000);
      await waitCaughtUp(primary, replicaB, 30_000);
      const source = new Database(db, { readonly: true, fileMustExist: true, timeout: 1000 });
      const nextStamp = source.prepare('SELECT t FROM burst WHERE id > ? ORDER BY id LIMIT 1');
      const backupPath = join(dir, 'backup.db');
      const backup = new Proc('streaming-backup', [benchScript('streaming-backup'), JSON.stringify({ src: db, dest: backupPath, intervalMs: 0, pagesPerStep: 0 })]);
      await backup.waitForLine(/"ms"/, 60_000);
      const probes = [new ReplicaProbe(join(dir, 'ra', 'app', 'db.sqlite')), new ReplicaProbe(join(dir, 'rb', 'app', 'db.sqlite')), new ReplicaProbe(backupPath, 0)];
      const samples: { t: number; lag: (number | null)[] }[] = [];
      const start = nowMs();
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          const at = nowMs();
          const lag = probes.map((p) => {
            const id = p.newestId();
            if (id === undefined) return null;
            const row = nextStamp.get(id) as { t: number } | undefined;
            return row === undefined ? 0 : Math.max(0, at - row.t);
          });
          samples.push({ t: (at - start) / 1000, lag });
          await sleep(Math.max(0, SAMPLE_MS - (nowMs() - at)));
        }
      })();
      const events: { x: number; label: string }[] = [];
      const writer = runScript<{ commits: number }>('streaming-writer', { mode: 'rows', db, table: 'burst', ratePerSec: RATE, seconds, padBytes: PAD_BYTES }, seconds * 1000 + 120_000);
      await sleep(cutAt * 1000);
      proxy.cut();
      events.push({ x: (nowMs() - start) / 1000, label: 'A: connection cut' });
      await sleep(Math.max(0, (killAt - cutAt) * 1000));
      replicaB.proc.kill9();
      await replicaB.proc.exited;
      events.push({ x: (nowMs() - start) / 1000, label: 'B: kill -9' });
      await sleep(downMs);
      replicaB = await startReplica({ dataDir: join(dir, 'rb'), primaryPort: primary.port, token });
      daemons.push(replicaB);
      events.push({ x: (nowMs() - start) / 1000, label: 'B: restarted' });
      const { commits } = await writer;
      const burstEnd = (nowMs() - start) / 1000;
      await waitCaughtUp(primary, replicaA, 60_000);
      await waitCaughtUp(primary, replicaB, 60_000);
      await sleep(500);
      await backup.stop();
      sampling = false;
      await sampler;
      for (const p of probes) p.close();
      source.close();

      const series = (i: number): [number, number | null][] => samples.map((s) => [Math.round(s.t * 1000) / 1000, s.lag[i] === null ? null : Math.round(s.lag[i]!)]);
      const svg = renderLineChart({
        title: `Replication lag during a ${RATE} commits/s burst (${commits} transactions)`,
        xLabel: 'seconds since the burst started',
        yLabel: 'lag (ms): age of the oldest commit not yet visible',
        series: [
          { name: 'replica A (through a proxy)', color: '#1f6fc0', points: series(0) },
          { name: 'replica B (kill -9, restart)', color: '#e07b00', points: series(1) },
          { name: 'baseline: db.backup() loop', color: '#8a8a8a', points: series(2) },
        ],
        markers: events,
        bands: [{ from: 0, to: burstEnd, label: 'write burst' }],
      });
      const out = fileURLToPath(new URL('../../docs/lag-chart.svg', import.meta.url));
      writeFileSync(out, svg);
      ctx.log(`wrote ${out}`);

      const lagOf = (i: number, from: number, to: number): number[] => samples.filter((s) => s.t >= from && s.t < to && s.lag[i] !== null).map((s) => s.lag[i]!);
      const steady = [...lagOf(0, 0.5, events[0]!.x), ...lagOf(1, 0.5, events[0]!.x)];
      const afterRestart = samples.filter((s) => s.t >= events[2]!.x);
      const recovered = afterRestart.find((s) => s.lag[1] !== null && s.lag[1]! < 100);
      const backupSteady = lagOf(2, 0.5, events[0]!.x);
      const steadyP99 = percentile(steady, 99);
      const peakA = Math.max(0, ...lagOf(0, events[0]!.x, events[1]!.x));
      const peakB = Math.max(0, ...lagOf(1, events[1]!.x, burstEnd + 5));
      const restartMs = recovered === undefined ? Number.NaN : (recovered.t - events[2]!.x) * 1000;
      const downFor = (events[2]!.x - events[1]!.x) * 1000;
      const steadyBaseline = { name: 'lag before the faults, p99', value: steadyP99, unit: 'ms' };
      const figures: Figure[] = [
        {
          name: 'lag before the faults (both replicas)',
          value: median(steady),
          p99: steadyP99,
          unit: 'ms',
          baseline: { name: 'db.backup() loop on the same burst, same window, p50', value: median(backupSteady), unit: 'ms' },
          ...(median(backupSteady) > 0 ? { ratio: median(steady) / median(backupSteady) } : {}),
        },
        { name: 'replica A: peak lag after the connection cut', value: peakA, unit: 'ms', baseline: steadyBaseline, ratio: peakA / steadyP99 },
        { name: 'replica B: peak lag, kill -9 to caught up', value: peakB, unit: 'ms', baseline: steadyBaseline, ratio: peakB / steadyP99 },
        {
          name: 'replica B: restart to lag under 100 ms',
          value: restartMs,
          unit: 'ms',
          baseline: { name: 'time B was down (kill -9 to restart)', value: downFor, unit: 'ms' },
          ratio: restartMs / downFor,
          note: 'from the restart of the replica process (start-up verification, reconnect, catch-up of the seqs it missed) until the oldest commit it does not show is under 100 ms old',
        },
      ];
      return {
        title: this.title,
        issue: 9,
        figures,
        notes: [
          `A writer process commits ${RATE} one-row transactions per second for ${seconds} s into the primary database (10 MB of other rows in it); replica A connects through a TCP proxy, replica B directly. At ${cutAt.toFixed(1)} s the proxy cuts A's connection; at ${killAt.toFixed(1)} s B gets kill -9 and is restarted ${downMs} ms later. Lag is sampled every ${SAMPLE_MS} ms from SQLite itself (see bench/lag-suite.ts): the age of the oldest transaction committed on the primary that the replica database does not show yet. A gap in a line is a sample the replica database could not answer (being recovered after the kill). The grey line is the baseline: a loop of better-sqlite3 \`db.backup()\` from the primary database into a file, back to back, sampled the same way (a gap: the file was locked by a copy in progress).`,
        ],
        extra: '![Replication lag over time](lag-chart.svg)',
      };
    } finally {
      await proxy.close();
      for (const d of daemons) d.proc.kill9();
      killAll();
    }
  },
};
