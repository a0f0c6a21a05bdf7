/**
 * The chaos soak (issue #9): one walwire-primary serving two namespaces, two
 * walwire-replica processes each replicating both through its own chaos
 * proxy, writers in other processes (better-sqlite3 scripts and the sqlite3
 * CLI) running mixed transactions the whole time, an invariant reader on
 * each replica, and a seeded schedule of faults (schedule.ts).
 *
 * The oracle, after the fault phase: heal every proxy, bring every process
 * back up, stop the writers, let the cluster converge, then
 * - the convergence check of design.md on every (namespace, replica):
 *   applied position = primary head, pages equal outside the replica-volatile
 *   page-1 bytes, integrity_check ok;
 * - every transaction id a writer printed as committed is present on the
 *   primary and on every replica (a kill -9 of a writer may lose only the
 *   transaction in flight, which it never printed; reset-replication and
 *   new generations lose nothing);
 * - the invariant readers saw zero violations, and no long reader saw its
 *   snapshot change inside its read transaction;
 * - no replica reported a divergence.
 *
 * Every process is a harness Child (killed by useHarness's afterEach, and
 * at process exit) and every directory comes from makeTempDir.
 */
import Database from 'better-sqlite3';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  ChaosProxy,
  type Child,
  type DaemonProcess,
  SQLITE3_CLI,
  TEST_TOKEN,
  assertConverged,
  freePort,
  makeTempDir,
  readDatabaseImage,
  spawnCommand,
  spawnFixture,
  spawnInvariantReader,
  startPrimaryProcess,
  startReplicaProcess,
  waitForCapture,
  waitForCatchUp,
  waitForDurable,
} from '../harness/index.js';
import { type Fault, NAMESPACES, type Namespace, WRITERS, describeSchedule, makeSchedule, rng } from './schedule.js';

export interface SoakOptions {
  readonly seed: number;
  /** Length of the fault phase (writers run throughout), ms. */
  readonly faultMs: number;
  /** Commits per second of each better-sqlite3 writer. */
  readonly writerRate?: number;
  readonly log?: (line: string) => void;
}

export interface SoakReport {
  readonly seed: number;
  readonly faultMs: number;
  readonly wallMs: number;
  readonly convergeMs: number;
  readonly faults: Record<string, number>;
  readonly failpointsFired: number;
  readonly longReadersSkipped: number;
  readonly transactions: { readonly committed: number; readonly byWriter: Record<string, number>; readonly onPrimary: Record<string, number> };
  readonly writerRestarts: number;
  readonly cliRuns: { readonly ok: number; readonly killed: number };
  readonly reconnects: readonly number[];
  readonly proxyConnections: readonly number[];
  readonly generations: number;
  readonly snapshotInstalls: number;
  readonly invariantChecks: number;
  readonly violations: number;
  /** Answered blob puts and deletes, requests retried without an answer, live blobs on the primary per namespace. */
  readonly blobs: { readonly puts: number; readonly deletes: number; readonly retries: number; readonly onPrimary: Record<string, number> };
}

const HEARTBEAT = ['--heartbeat-interval-ms', '500', '--heartbeat-timeout-ms', '4000'];
const BANK_ACCOUNTS = 20;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const alive = (c: Child): boolean => c.process.exitCode === null && c.process.signalCode === null;

/** Where the databases, data directories and logs of one run live. */
interface Layout {
  readonly dir: string;
  readonly db: Record<Namespace, string>;
  readonly primaryData: string;
  readonly replicaData: readonly string[];
}

const replicaDb = (layout: Layout, r: number, ns: Namespace): string => join(layout.replicaData[r]!, ns, 'db.sqlite');

/** A daemon that is killed and restarted: keeps every incarnation's log lines and counters. */
class Restartable {
  current: DaemonProcess | undefined;
  readonly retired: Child[] = [];
  /** Last `connection.reconnects` seen per incarnation (replicas); summed in the report. */
  reconnectsDone = 0;
  reconnectsNow = 0;

  constructor(
    readonly name: string,
    readonly startFn: (env: Record<string, string>) => Promise<DaemonProcess>,
  ) {}

  async start(env: Record<string, string> = {}): Promise<void> {
    this.retire();
    this.current = await this.startFn(env);
  }

  /** Moves a dead (or about to be killed) incarnation to `retired`. */
  retire(): void {
    if (this.current === undefined) return;
    this.retired.push(this.current.child);
    this.reconnectsDone += this.reconnectsNow;
    this.reconnectsNow = 0;
    this.current = undefined;
  }

  async kill9(): Promise<void> {
    const c = this.current;
    this.retire();
    if (c !== undefined) await c.child.kill9();
  }

  async terminate(): Promise<void> {
    const c = this.current;
    this.retire();
    if (c !== undefined) await c.child.terminate(15_000);
  }

  get running(): boolean {
    return this.current !== undefined && alive(this.current.child);
  }

  allLines(): string[] {
    return [...this.retired, ...(this.current ? [this.current.child] : [])].flatMap((c) => c.lines);
  }
}

export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  // Straight to stderr: vitest would otherwise frame every console line.
  const log = options.log ?? ((line: string) => void process.stderr.write(`${line}\n`));
  const started = Date.now();
  const schedule = makeSchedule({ seed: options.seed, faultMs: options.faultMs, replicas: 2 });
  log(describeSchedule(options.seed, options.faultMs, schedule));
  log(`replay: npm run soak -- --seed ${options.seed} --minutes ${(options.faultMs / 60_000).toFixed(2)}`);

  const dir = makeTempDir('walwire-soak-');
  const layout: Layout = {
    dir,
    db: { alpha: join(dir, 'alpha.db'), beta: join(dir, 'beta.db') },
    primaryData: join(dir, 'primary'),
    replicaData: [join(dir, 'replica1'), join(dir, 'replica2')],
  };
  const random = rng(options.seed);
  const writerRate = options.writerRate ?? 25;

  // Schema and the bank (all accounts in one transaction, so every state the
  // invariant reader can see has the same sum), through the sqlite3 CLI.
  for (const ns of NAMESPACES) {
    const accounts = Array.from({ length: BANK_ACCOUNTS }, (_, i) => `(${i + 1}, 1000)`).join(',');
    await runCli(layout.db[ns], [
      'PRAGMA journal_mode = WAL;',
      'CREATE TABLE soak_txns(txid TEXT PRIMARY KEY, writer TEXT NOT NULL, at INTEGER NOT NULL);',
      'CREATE TABLE soak_rows(k INTEGER PRIMARY KEY, writer TEXT NOT NULL, txid TEXT NOT NULL, payload BLOB);',
      'CREATE TABLE bank(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);',
      'CREATE TABLE journal_rows(id INTEGER PRIMARY KEY, note TEXT);',
      `INSERT INTO bank(id, balance) VALUES ${accounts};`,
    ].join('\n'));
  }

  // The primary keeps one port across restarts, so the proxies keep their target.
  const primaryPort = await freePort();
  const primary = new Restartable('primary', (env) =>
    startPrimaryProcess({
      dataDir: layout.primaryData,
      dbs: layout.db,
      env,
      args: ['--port', String(primaryPort), '--checkpoint-pages', '300', '--wal-truncate-bytes', String(8 * 1024 * 1024), ...HEARTBEAT],
    }),
  );
  await primary.start();
  const proxies = [await ChaosProxy.start(primaryPort), await ChaosProxy.start(primaryPort)];
  const replicas = proxies.map(
    (proxy, r) =>
      new Restartable(`replica${r + 1}`, (env) =>
        startReplicaProcess({
          dataDir: layout.replicaData[r]!,
          url: `${proxy.url}/v1/replicate`,
          namespaces: NAMESPACES,
          env,
          args: ['--replica-id', `soak-replica-${r + 1}`, '--stall-timeout-ms', '20000', ...HEARTBEAT],
        }),
      ),
  );
  for (const r of replicas) await r.start();

  const faults: Record<string, number> = {};
  let failpointsFired = 0;
  let longReadersSkipped = 0;
  let writerRestarts = 0;
  const cliRuns = { ok: 0, killed: 0 };
  const problems: string[] = [];
  const background = new Set<Promise<void>>();
  const committedCli = new Map<Namespace, string[]>(NAMESPACES.map((ns) => [ns, []]));
  // The status poller runs until the oracle is done, or the run failed.
  let polling = false;

  try {
    // --- writers -----------------------------------------------------------
    const writerChildren: Child[][] = WRITERS.map(() => []);
    const startWriter = async (i: number): Promise<void> => {
      const w = WRITERS[i]!;
      const seed = (options.seed + 7919 * (i + 1) + 104_729 * writerChildren[i]!.length) >>> 0;
      const child = spawnFixture('soak-writer', [JSON.stringify({ db: layout.db[w.ns], writer: w.name, seed, ratePerSec: writerRate, bankAccounts: BANK_ACCOUNTS })]);
      writerChildren[i]!.push(child);
      await child.waitForLine(/^ready$/, 30_000);
    };
    for (let i = 0; i < WRITERS.length; i++) await startWriter(i);

    // The sqlite3 CLI writers: one short-lived shell per transaction.
    let stopCli = false;
    const cliInFlight = new Map<Namespace, Child>();
    const cliLoop = async (ns: Namespace): Promise<void> => {
      const rand = rng(options.seed ^ (ns === 'alpha' ? 0xa1 : 0xb2));
      for (let n = 0; !stopCli; n++) {
        const txid = `cli-${ns}-${n}`;
        const big = rand() < 0.1 ? 60_000 + Math.floor(rand() * 200_000) : 20 + Math.floor(rand() * 1500);
        const a = 1 + Math.floor(rand() * BANK_ACCOUNTS);
        const b = 1 + Math.floor(rand() * BANK_ACCOUNTS);
        const sql = [
          '.timeout 60000',
          'BEGIN IMMEDIATE;',
          `INSERT INTO soak_txns(txid, writer, at) VALUES ('${txid}', 'cli', ${Date.now()});`,
          `INSERT INTO soak_rows(writer, txid, payload) VALUES ('cli', '${txid}', randomblob(${big}));`,
          'UPDATE soak_rows SET payload = randomblob(300) WHERE k IN (SELECT k FROM soak_rows ORDER BY random() LIMIT 2);',
          `DELETE FROM soak_rows WHERE writer = 'cli' AND length(payload) > 20000 AND k NOT IN (SELECT k FROM soak_rows WHERE writer = 'cli' AND length(payload) > 20000 ORDER BY k DESC LIMIT 3);`,
          `UPDATE bank SET balance = balance - 7 WHERE id = ${a};`,
          `UPDATE bank SET balance = balance + 7 WHERE id = ${b};`,
          `INSERT INTO journal_rows(note) VALUES ('${txid}');`,
          'COMMIT;',
          `SELECT 'committed ${txid}';`,
        ].join('\n');
        const child = spawnCommand(SQLITE3_CLI, ['-bail', layout.db[ns]], { input: sql });
        // 'exit' can come before the last stdout line is read; 'close' comes after it.
        const closed = once(child.process, 'close');
        cliInFlight.set(ns, child);
        const status = await child.exited;
        await closed;
        cliInFlight.delete(ns);
        if (child.lines.includes(`committed ${txid}`)) committedCli.get(ns)!.push(txid);
        if (status.signal === 'SIGKILL') cliRuns.killed++;
        else if (status.code === 0) cliRuns.ok++;
        else problems.push(`sqlite3 CLI writer on ${ns} failed (code ${status.code}): ${child.stderr.join(' | ')}`);
        await sleep(300 + Math.floor(rand() * 900));
      }
    };
    const cliLoops = NAMESPACES.map((ns) => cliLoop(ns));

    // --- blob uploads: puts and deletes over HTTP, retried until answered ------
    // A request that got no answer (primary killed or cut) is retried with
    // the same id and body, as docs/operations.md tells clients to: that is
    // what heals a crash between a blob's rename and its log event.
    let stopBlobs = false;
    const committedBlobs = new Map<Namespace, Map<string, string | null>>(NAMESPACES.map((ns) => [ns, new Map()]));
    const blobCounts = { puts: 0, deletes: 0, retries: 0 };
    const blobRequest = async (method: 'PUT' | 'DELETE', ns: Namespace, id: string, body?: Buffer): Promise<number> => {
      for (;;) {
        try {
          const res = await fetch(`http://127.0.0.1:${primaryPort}/v1/namespaces/${ns}/blobs/${id}`, {
            method,
            headers: { authorization: `Bearer ${TEST_TOKEN}` },
            ...(body !== undefined ? { body } : {}),
            signal: AbortSignal.timeout(30_000),
          });
          await res.arrayBuffer();
          if (res.status >= 500) throw new Error(`HTTP ${res.status}`); // e.g. 503 while the namespace restarts: retry
          return res.status;
        } catch {
          blobCounts.retries++;
          await sleep(200);
        }
      }
    };
    const blobLoop = async (ns: Namespace): Promise<void> => {
      const rand = rng(options.seed ^ (ns === 'alpha' ? 0xb10b : 0xb10c));
      const live: string[] = [];
      for (let n = 0; !stopBlobs; n++) {
        if (live.length > 3 && rand() < 0.2) {
          const id = live.splice(Math.floor(rand() * live.length), 1)[0]!;
          const status = await blobRequest('DELETE', ns, id);
          // 404: an earlier, unanswered attempt already deleted it.
          if (status === 200 || status === 404) {
            committedBlobs.get(ns)!.set(id, null);
            blobCounts.deletes++;
          } else problems.push(`blob DELETE ${ns}/${id}: HTTP ${status}`);
        } else {
          const size = rand() < 0.1 ? 300_000 + Math.floor(rand() * 1_200_000) : 1 + Math.floor(rand() * 100_000);
          const body = randomBytes(size);
          const id = `soak-${ns}-${n}`;
          const status = await blobRequest('PUT', ns, id, body);
          if (status === 201 || status === 200) {
            committedBlobs.get(ns)!.set(id, createHash('sha256').update(body).digest('hex'));
            live.push(id);
            blobCounts.puts++;
          } else problems.push(`blob PUT ${ns}/${id}: HTTP ${status}`);
        }
        await sleep(150 + Math.floor(rand() * 450));
      }
    };
    const blobLoops = NAMESPACES.map((ns) => blobLoop(ns));

    // --- invariant readers: one per replica, on different namespaces --------
    const readers = replicas.map((_, r) => spawnInvariantReader(replicaDb(layout, r, NAMESPACES[r % NAMESPACES.length]!), 5000, 20));
    const longReaders: Child[] = [];

    // --- status poller: reconnect counters of the live incarnations ---------
    polling = true;
    const poller = (async () => {
      while (polling) {
        for (const r of replicas) {
          const d = r.current;
          if (d === undefined || !alive(d.child)) continue;
          try {
            const st = await d.get('/v1/status');
            if (r.current === d) r.reconnectsNow = (st.body['connection'] as { reconnects: number }).reconnects;
          } catch {
            // Killed between the check and the request.
          }
        }
        await sleep(500);
      }
    })();

    // Let every replica bootstrap before the first fault.
    for (const ns of NAMESPACES) for (const r of replicas) await waitForCatchUp(primary.current!, r.current!, ns, undefined, 60_000);
    log(`soak: cluster up in ${Date.now() - started} ms; fault phase starts`);

    // --- faults --------------------------------------------------------------
    const restartArmed = async (d: Restartable, failpoints: string, armedMs: number, reset: Namespace | undefined): Promise<void> => {
      await d.terminate();
      let armed: DaemonProcess | undefined;
      try {
        await d.start({ WALWIRE_FAILPOINTS: failpoints });
        armed = d.current;
      } catch {
        // Died of the failpoint before it was listening (e.g. a log append at start-up).
        failpointsFired++;
        d.retire();
        await d.start();
        return;
      }
      if (reset !== undefined) void postReset(reset).catch(() => undefined);
      const deadline = Date.now() + armedMs;
      while (Date.now() < deadline && alive(armed!.child)) await sleep(50);
      if (!alive(armed!.child)) {
        const status = await armed!.child.exited;
        if (status.signal === 'SIGKILL') failpointsFired++;
        else problems.push(`${d.name} armed with ${failpoints} exited with code ${status.code}: ${armed!.child.stderr.slice(-5).join(' | ')}`);
        await d.start();
      } else {
        await d.terminate();
        await d.start();
      }
    };

    const postReset = async (ns: Namespace): Promise<number> => {
      const res = await fetch(`http://127.0.0.1:${primaryPort}/v1/namespaces/${ns}/reset-replication`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TEST_TOKEN}` },
      });
      await res.text();
      return res.status;
    };

    const inject = async (fault: Fault): Promise<void> => {
      switch (fault.kind) {
        case 'kill-primary':
          await primary.kill9();
          await sleep(fault.downMs);
          await primary.start();
          return;
        case 'kill-replica': {
          const r = replicas[fault.replica]!;
          await r.kill9();
          await sleep(fault.downMs);
          await r.start();
          return;
        }
        case 'kill-writer': {
          if (typeof fault.writer === 'number') {
            const child = writerChildren[fault.writer]!.at(-1)!;
            await child.kill9();
            writerRestarts++;
            await startWriter(fault.writer);
          } else {
            const child = cliInFlight.get(fault.writer.slice(4) as Namespace);
            if (child !== undefined) await child.kill9();
          }
          return;
        }
        case 'proxy-cut':
          proxies[fault.replica]!.cut();
          return;
        case 'proxy-delay': {
          const p = proxies[fault.replica]!;
          p.delay(fault.ms);
          track(sleep(fault.forMs).then(() => p.delay(0)));
          return;
        }
        case 'proxy-throttle': {
          const p = proxies[fault.replica]!;
          p.throttle(fault.bytesPerSec);
          track(sleep(fault.forMs).then(() => p.throttle(0)));
          return;
        }
        case 'proxy-flip':
          proxies[fault.replica]!.flipByte(fault.direction, fault.offset, fault.mask);
          return;
        case 'failpoint-primary':
          await restartArmed(primary, fault.failpoints, fault.armedMs, fault.reset);
          return;
        case 'failpoint-replica':
          await restartArmed(replicas[fault.replica]!, fault.failpoints, fault.armedMs, fault.reset);
          return;
        case 'long-reader': {
          const reader = spawnFixture('replica-long-reader', [JSON.stringify({ db: replicaDb(layout, fault.replica, fault.ns) })]);
          longReaders.push(reader);
          track(
            (async () => {
              try {
                await reader.waitForLine(/^holding /, 15_000);
              } catch {
                // The database was mid-recovery (a hot journal after a kill): nothing to hold.
                longReadersSkipped++;
                await reader.kill9();
                return;
              }
              await sleep(fault.holdMs);
              reader.process.stdin!.write('go\n');
              await reader.waitForLine(/^released /, 30_000);
            })(),
          );
          return;
        }
        case 'reset-replication': {
          const status = await postReset(fault.ns);
          if (status !== 200) problems.push(`reset-replication of ${fault.ns}: HTTP ${status}`);
          return;
        }
      }
    };
    function track(p: Promise<void>): void {
      const q = p.catch((err: unknown) => {
        problems.push(`background fault: ${(err as Error).message}`);
      });
      background.add(q);
      void q.finally(() => background.delete(q));
    }

    const phaseStart = Date.now();
    for (const planned of schedule) {
      const wait = phaseStart + planned.at - Date.now();
      if (wait > 0) await sleep(wait);
      log(`soak: +${((Date.now() - phaseStart) / 1000).toFixed(1)} s (at=${Date.now()}) ${JSON.stringify(planned.fault)}`);
      await inject(planned.fault);
      faults[planned.fault.kind] = (faults[planned.fault.kind] ?? 0) + 1;
      for (const w of writerChildren) {
        const c = w.at(-1)!;
        if (!alive(c)) throw new Error(`writer ${c.label} died on its own: ${c.stderr.slice(-5).join(' | ')}`);
      }
    }
    const rest = phaseStart + options.faultMs - Date.now();
    if (rest > 0) await sleep(rest);

    // --- the oracle ------------------------------------------------------------
    log('soak: fault phase over; healing, stopping writers, converging');
    const convergeStart = Date.now();
    for (const p of proxies) p.heal();
    await Promise.all(background);
    if (!primary.running) await primary.start();
    for (const r of replicas) if (!r.running) await r.start();
    stopCli = true;
    for (const w of writerChildren) {
      const c = w.at(-1)!;
      c.process.kill('SIGTERM');
      await c.succeeded(60_000);
    }
    await Promise.all(cliLoops);
    stopBlobs = true;
    await Promise.all(blobLoops);

    for (const ns of NAMESPACES) {
      await waitForCapture(primary.current!, ns, layout.db[ns], 180_000);
      for (const r of replicas) await waitForCatchUp(primary.current!, r.current!, ns, undefined, 180_000);
    }
    const convergeMs = Date.now() - convergeStart;

    for (const ns of NAMESPACES) {
      for (let r = 0; r < replicas.length; r++) {
        try {
          await waitForDurable(primary.current!, replicas[r]!.current!, ns, 120_000);
          await assertConverged({ primaryDb: layout.db[ns], replicaDb: replicaDb(layout, r, ns), primaryBlobs: join(layout.primaryData, ns, 'blobs'), replicaBlobs: join(layout.replicaData[r]!, ns, 'blobs') });
        } catch (err) {
          problems.push(`convergence of ${ns} on replica${r + 1}: ${(err as Error).message}`);
        }
      }
    }

    // Every committed transaction id is on the primary and on every replica.
    const byWriter: Record<string, number> = {};
    const committed = new Map<Namespace, string[]>(NAMESPACES.map((ns) => [ns, [...committedCli.get(ns)!]]));
    byWriter['sqlite3-cli'] = NAMESPACES.reduce((s, ns) => s + committedCli.get(ns)!.length, 0);
    WRITERS.forEach((w, i) => {
      const ids = writerChildren[i]!.flatMap((c) => c.lines.filter((l) => l.startsWith('committed ')).map((l) => l.slice(10)));
      byWriter[w.name] = ids.length;
      committed.get(w.ns)!.push(...ids);
    });
    const onPrimary: Record<string, number> = {};
    for (const ns of NAMESPACES) {
      const want = committed.get(ns)!;
      const places: [string, string][] = [['primary', layout.db[ns]], ...replicas.map((_, r): [string, string] => [`replica${r + 1}`, replicaDb(layout, r, ns)])];
      for (const [where, path] of places) {
        const have = await txidsIn(path);
        if (where === 'primary') onPrimary[ns] = have.size;
        const missing = want.filter((id) => !have.has(id));
        if (missing.length > 0) problems.push(`${missing.length} committed transactions of ${ns} missing on ${where}: ${missing.slice(0, 5).join(', ')}`);
      }
    }

    // Every blob put that was answered is on the primary and every replica with its content; every answered delete is gone.
    for (const ns of NAMESPACES) {
      const dirs: [string, string][] = [['primary', join(layout.primaryData, ns, 'blobs')], ...layout.replicaData.map((d, r): [string, string] => [`replica${r + 1}`, join(d, ns, 'blobs')])];
      for (const [where, dir] of dirs) {
        const names = new Set(existsSync(dir) ? readdirSync(dir) : []);
        for (const [id, sha] of committedBlobs.get(ns)!) {
          const present = [...names].some((n) => n.startsWith(`${id}~`));
          if (sha === null ? present : !names.has(`${id}~${sha}`)) problems.push(`blob ${ns}/${id} ${sha === null ? 'deleted but present' : 'missing'} on ${where}`);
        }
      }
    }

    // Invariant readers and long readers.
    let invariantChecks = 0;
    let violations = 0;
    for (const reader of readers) {
      reader.process.kill('SIGTERM');
      const summary = await reader.waitForLine(/^checks /, 60_000);
      const m = /checks (\d+) violations (\d+)/.exec(summary)!;
      invariantChecks += Number(m[1]);
      violations += Number(m[2]);
      for (const l of reader.lines.filter((x) => x.startsWith('violation'))) problems.push(`invariant reader: ${l}`);
    }
    for (const l of longReaders.flatMap((c) => c.lines.filter((x) => x.includes(' changed')))) problems.push(`long reader saw its snapshot change: ${l}`);

    const replicaLines = replicas.flatMap((r) => r.allLines());
    const primaryLines = primary.allLines();
    const diverged = replicaLines.filter((l) => l.includes('replica diverged'));
    if (diverged.length > 0) problems.push(`replicas diverged ${diverged.length} times: ${diverged[0]!.slice(0, 300)}`);

    polling = false;
    await poller;
    const report: SoakReport = {
      seed: options.seed,
      faultMs: options.faultMs,
      wallMs: Date.now() - started,
      convergeMs,
      faults,
      failpointsFired,
      longReadersSkipped,
      transactions: { committed: Object.values(byWriter).reduce((a, b) => a + b, 0), byWriter, onPrimary },
      writerRestarts,
      cliRuns,
      reconnects: replicas.map((r) => r.reconnectsDone + r.reconnectsNow),
      proxyConnections: proxies.map((p) => p.stats.connections),
      generations: primaryLines.filter((l) => l.includes('"msg":"new generation"')).length,
      snapshotInstalls: replicaLines.filter((l) => l.includes('bootstrap complete: snapshot installed')).length,
      invariantChecks,
      violations,
      blobs: { ...blobCounts, onPrimary: Object.fromEntries(NAMESPACES.map((ns) => [ns, readdirSync(join(layout.primaryData, ns, 'blobs')).length])) },
    };
    log(`soak report: ${JSON.stringify(report)}`);
    if (problems.length > 0) throw new Error(`soak seed ${options.seed} failed:\n- ${problems.join('\n- ')}`);
    if (invariantChecks < 100) throw new Error(`soak seed ${options.seed}: the invariant readers ran only ${invariantChecks} checks`);
    return report;
  } catch (err) {
    // What the daemons say now: the usual cause of a convergence timeout is in
    // a replica's connection.lastError or a namespace's state.
    for (const d of [primary, ...replicas]) {
      const body: Record<string, unknown> = d.running ? await d.current!.get('/v1/status').then((r) => r.body, (e: unknown) => ({ error: String(e) })) : { down: true };
      const connection = body['connection'] as Record<string, unknown> | undefined;
      const namespaces = (body['namespaces'] as Record<string, unknown>[] | undefined)?.map((n) => ({ ns: n['ns'] ?? n['name'], state: n['state'], generation: n['generation'], seq: n['appliedSeq'] ?? n['headSeq'], lastError: n['lastError'] ?? null }));
      log(`soak: ${d.name} status: ${JSON.stringify({ lastError: connection?.['lastError'], reconnects: connection?.['reconnects'], namespaces, ...('down' in body || 'error' in body ? body : {}) })}`);
    }
    saveLogs(layout, primary, replicas);
    log(`soak seed ${options.seed} FAILED; daemon logs in ${join(dir, 'logs')} (kept with WALWIRE_KEEP_TMP=1); replay with --seed ${options.seed}`);
    throw err;
  } finally {
    polling = false;
    for (const p of proxies) await p.close();
  }
}

/** Runs SQL through a sqlite3 CLI child (never execFileSync: the event loop keeps serving the proxies). */
async function runCli(db: string, sql: string): Promise<void> {
  await spawnCommand(SQLITE3_CLI, ['-bail', db], { input: sql }).succeeded(60_000);
}

/** Transaction ids in soak_txns of SQLite's recovered image of `path` (read from a private copy). */
async function txidsIn(path: string): Promise<Set<string>> {
  const image = await readDatabaseImage(path);
  // A deserialized database cannot be in WAL mode: mark the copy as a
  // rollback-journal database (header bytes 18–19), as replicas are.
  image[18] = 1;
  image[19] = 1;
  const db = new Database(image);
  try {
    return new Set((db.prepare('SELECT txid FROM soak_txns').all() as { txid: string }[]).map((r) => r.txid));
  } finally {
    db.close();
  }
}

function saveLogs(layout: Layout, primary: Restartable, replicas: readonly Restartable[]): void {
  const dir = join(layout.dir, 'logs');
  mkdirSync(dir, { recursive: true });
  for (const d of [primary, ...replicas]) writeFileSync(join(dir, `${d.name}.log`), d.allLines().join('\n'));
}
