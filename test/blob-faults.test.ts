/**
 * Two fault paths of blob streaming, each driven by a failpoint in real
 * processes (the random soak reaches them only by chance):
 *
 * - the primary's blob reads failing with a transient errno
 *   (`primary.blob.read=errno(EIO)…`): a short outage is retried inside the
 *   stream and never reaches the replica; one longer than the retry budget
 *   (2 s) fails the stream with an error, the replica reconnects and its
 *   durable seq stays below the blob until a healthy primary streams it;
 * - a bootstrap blob copy failing on the replica (`replica.blob.save=throw@3`),
 *   in a generation whose log holds no blob event (so nothing but the
 *   bootstrap could bring the blob): the snapshot is not installed at
 *   SNAPSHOT_END, the connection closes with WALWIRE_ERR_BLOB_SAVE_FAILED, and
 *   the next connection resumes the staged snapshot, copies the blobs again
 *   and installs.
 *
 * Every case ends on outcomes: blob bytes on the replica's disk, the durable
 * seq against the primary's head, page-equal databases, and the daemons' log
 * lines and error codes. None depends on how long a step took.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  type DaemonProcess,
  TEST_TOKEN,
  assertConverged,
  blobFiles,
  freePort,
  makeTempDir,
  putBlob,
  putRandomBlobs,
  replicationUrl,
  runWriter,
  startPrimaryProcess,
  startReplicaProcess,
  useHarness,
  waitForCatchUp,
  waitForDurable,
} from './harness/index.js';

useHarness();

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One JSON log line of a daemon (pino: numeric level, `msg`, then the fields). */
interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly [field: string]: unknown;
}

const WARN = 40;
const ERROR = 50;

function logs(d: DaemonProcess): LogLine[] {
  const out: LogLine[] = [];
  for (const line of d.child.lines) {
    if (!line.startsWith('{')) continue;
    try {
      const j = JSON.parse(line) as Partial<LogLine>;
      if (typeof j.msg === 'string' && typeof j.level === 'number') out.push(j as LogLine);
    } catch {
      // not a log line
    }
  }
  return out;
}

/** Waits until `count` log lines of `d` satisfy `test`; returns them. */
async function waitForLogs(d: DaemonProcess, test: (l: LogLine) => boolean, count = 1, timeoutMs = 30_000): Promise<LogLine[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const hits = logs(d).filter(test);
    if (hits.length >= count) return hits;
    if (d.child.process.exitCode !== null || d.child.process.signalCode !== null) throw new Error(`${d.child.label} exited while waiting for a log line; stderr: ${d.child.stderr.slice(-5).join(' | ')}`);
    if (Date.now() > deadline) {
      throw new Error(`${hits.length} of ${count} matching log lines within ${timeoutMs} ms; last lines:\n${d.child.lines.slice(-15).join('\n')}`);
    }
    await sleep(20);
  }
}


interface ReplicaNsStatus {
  readonly appliedSeq: number;
  readonly durableSeq: number;
  readonly gapSeq: number | null;
  readonly blobs: { readonly failures: number; readonly saved: number };
}

interface ReplicaConnectionStatus {
  readonly connected: boolean;
  readonly reconnects: number;
  readonly lastError: { readonly code: string; readonly message: string } | null;
}

async function replicaStatus(replica: DaemonProcess, ns: string): Promise<{ ns: ReplicaNsStatus; connection: ReplicaConnectionStatus }> {
  const st = await replica.get('/v1/status');
  const n = (st.body['namespaces'] as (ReplicaNsStatus & { ns: string })[]).find((x) => x.ns === ns);
  if (n === undefined) throw new Error(`replica status has no namespace ${ns}`);
  return { ns: n, connection: st.body['connection'] as ReplicaConnectionStatus };
}


/** A primary database with some rows, written by another process before the daemon starts. */
async function setup() {
  const dir = makeTempDir();
  const db = join(dir, 'app.db');
  await runWriter({ db }, { mode: 'load', txns: 40, rowsPerTxn: 10, payloadBytes: 500, ratePerSec: 0 });
  return { dir, db, replicaDb: join(dir, 'r', 'app', 'db.sqlite'), replicaBlobs: join(dir, 'r', 'app', 'blobs') };
}

const isReadRetry = (l: LogLine): boolean => l.level === WARN && /^blob read at \d+ failed; retrying$/.test(l.msg);
const isSessionClose = (l: LogLine): boolean => l.msg === 'closing replica connection';

describe('primary blob reads failing with a transient errno', () => {
  it('a few failed reads are retried inside the stream: the blob arrives byte-exact and durable, with no reconnect', async () => {
    const { dir, db, replicaDb, replicaBlobs } = await setup();
    // The first three read attempts fail with EIO; the retry (20, 40, 80 ms) outlasts them.
    const primary = await startPrimaryProcess({ dataDir: join(dir, 'p'), dbs: { app: db }, env: { WALWIRE_FAILPOINTS: 'primary.blob.read=errno(EIO)*3' } });
    const replica = await startReplicaProcess({ dataDir: join(dir, 'r'), url: replicationUrl(primary.port), namespaces: ['app'] });
    await waitForCatchUp(primary, replica, 'app', db);
    // Four BLOB_CHUNKs of the default 256 KiB.
    const body = randomBytes(900_000);
    const { seq } = await putBlob(primary, 'app', 'report.bin', body);
    const head = await waitForDurable(primary, replica, 'app', 30_000);
    expect(head).toBeGreaterThanOrEqual(seq);

    const retries = logs(primary).filter(isReadRetry);
    expect(retries.map((l) => [l.msg, l['code'], l['blobId']])).toEqual([
      ['blob read at 0 failed; retrying', 'EIO', 'report.bin'],
      ['blob read at 0 failed; retrying', 'EIO', 'report.bin'],
      ['blob read at 0 failed; retrying', 'EIO', 'report.bin'],
    ]);
    // The retry kept the failure inside the primary: the stream never failed.
    expect(logs(primary).filter(isSessionClose)).toEqual([]);
    const st = await replicaStatus(replica, 'app');
    expect(st.connection.reconnects).toBe(0);
    expect(st.connection.lastError).toBeNull();
    expect(st.ns.durableSeq).toBe(head);
    expect(st.ns.blobs.failures).toBe(0);

    const files = blobFiles(replicaBlobs);
    expect([...files.keys()]).toEqual(['report.bin']);
    expect(files.get('report.bin')!.equals(body)).toBe(true);
    await primary.child.terminate();
    await assertConverged({ primaryDb: db, replicaDb });
  }, 60_000);

  it('reads failing past the retry budget fail the stream with an error; the replica reconnects, holds its durable seq, and gets the blob once the primary is healthy', async () => {
    const { dir, db, replicaDb, replicaBlobs } = await setup();
    const port = await freePort();
    // A retry budget of 300 ms instead of the default 2 s (--blob-read-retry-ms, checked below).
    const primaryOptions = { dataDir: join(dir, 'p'), dbs: { app: db }, args: ['--port', String(port), '--blob-read-retry-ms', '300'] };
    // Every read attempt fails: no retry budget can outlast it.
    let primary = await startPrimaryProcess({ ...primaryOptions, env: { WALWIRE_FAILPOINTS: 'primary.blob.read=errno(EIO)' } });
    const replica = await startReplicaProcess({ dataDir: join(dir, 'r'), url: replicationUrl(port), namespaces: ['app'] });
    await waitForCatchUp(primary, replica, 'app', db);
    const body = randomBytes(700_000);
    const { seq: blobSeq } = await putBlob(primary, 'app', 'invoice.pdf', body);
    // Transactions after the blob keep applying while its content cannot be read.
    await runWriter({ db }, { mode: 'load', txns: 10, rowsPerTxn: 2, payloadBytes: 100, ratePerSec: 0 });

    // Two failed streams: the second proves the replica reconnected and was re-sent the blob event.
    const closes = await waitForLogs(primary, isSessionClose, 2, 30_000);
    for (const c of closes) {
      expect(c.level).toBe(ERROR);
      expect(c['code']).toBe('WALWIRE_ERR_BLOB_READ_FAILED');
      expect(c['err']).toMatch(/^blob invoice\.pdf of app \(seq \d+\) could not be read for streaming: EIO: failpoint primary\.blob\.read fired/);
    }
    // Each failure came only after the retries: the first connection's retry lines precede its close.
    const primaryLogs = logs(primary);
    const firstClose = primaryLogs.findIndex(isSessionClose);
    const retriedFirst = primaryLogs.slice(0, firstClose).filter(isReadRetry);
    expect(retriedFirst.length).toBeGreaterThanOrEqual(2);
    for (const r of retriedFirst) expect([r.msg, r['code'], r['blobId']]).toEqual(['blob read at 0 failed; retrying', 'EIO', 'invoice.pdf']);
    // Within the flag's 300 ms: delays 20, 40, 80, 160 at most (the default 2 s budget goes on to 320 and 640).
    expect(Math.max(...retriedFirst.map((r) => Number(r['delayMs'])))).toBeLessThanOrEqual(160);
    // The replica was told why, and reconnected.
    const reported = logs(replica).filter((l) => l.msg.startsWith('primary reported: blob invoice.pdf of app'));
    expect(reported.length).toBeGreaterThanOrEqual(1);
    expect(reported[0]!['code']).toBe('WALWIRE_ERR_BLOB_READ_FAILED');
    // RFC 6455 §7.4.1 1011 (an unexpected condition on the server), not 1002: the replica did nothing wrong.
    expect(logs(replica).some((l) => l.msg === 'disconnected' && l['code'] === 1011)).toBe(true);
    await waitForLogs(replica, (l) => l.msg === 'handshake complete', 3, 30_000);
    expect((await replicaStatus(replica, 'app')).connection.reconnects).toBeGreaterThanOrEqual(2);

    // Invariant 2: everything applied, the durable seq held below the unsaved blob, nothing on disk for it.
    const applied = await waitForCatchUp(primary, replica, 'app', db);
    expect(applied).toBeGreaterThan(blobSeq);
    const held = await replicaStatus(replica, 'app');
    expect(held.ns.appliedSeq).toBeGreaterThanOrEqual(applied);
    expect(held.ns.durableSeq).toBeLessThan(blobSeq);
    expect(blobFiles(replicaBlobs).size).toBe(0);

    // Disarmed: the same primary data on the same port, without the failpoint.
    await primary.child.terminate();
    primary = await startPrimaryProcess(primaryOptions);
    const head = await waitForDurable(primary, replica, 'app', 30_000);
    expect(head).toBeGreaterThanOrEqual(applied);
    expect((await replicaStatus(replica, 'app')).ns.durableSeq).toBe(head);
    expect(logs(primary).filter(isSessionClose)).toEqual([]);
    const files = blobFiles(replicaBlobs);
    expect([...files.keys()]).toEqual(['invoice.pdf']);
    expect(files.get('invoice.pdf')!.equals(body)).toBe(true);
    await primary.child.terminate();
    await assertConverged({ primaryDb: db, replicaDb });
  }, 90_000);
});

describe('a bootstrap blob copy that fails on the replica', () => {
  it('the snapshot is not installed; the replica reconnects, resumes the staged snapshot, copies the blobs again and installs', async () => {
    const { dir, db, replicaDb, replicaBlobs } = await setup();
    const primary = await startPrimaryProcess({ dataDir: join(dir, 'p'), dbs: { app: db } });
    // Two chunks or more each, and more blobs than stream at once.
    const blobs = await putRandomBlobs(primary, 'app', 10, (i) => 300_000 + i * 20_000);
    // A new generation, whose log holds no blob event: the bootstrap copies are
    // then the only way the blobs reach the replica, so an install without one
    // of them would lose it for good. (In the generation of the PUTs, the image
    // is at seq 0 and the stream after it would re-announce every PUT, hiding
    // such an install.)
    const reset = await fetch(`http://127.0.0.1:${primary.port}/v1/namespaces/app/reset-replication`, { method: 'POST', headers: { authorization: `Bearer ${TEST_TOKEN}` } });
    expect(reset.status).toBe(200);
    await runWriter({ db }, { mode: 'load', txns: 10, rowsPerTxn: 5, payloadBytes: 300, ratePerSec: 0 });
    const replica = await startReplicaProcess({
      dataDir: join(dir, 'r'),
      url: replicationUrl(primary.port),
      namespaces: ['app'],
      env: { WALWIRE_FAILPOINTS: 'replica.blob.save=throw@3' },
      // The gap's own reconnect waits this long, so the first attempt can only end at SNAPSHOT_END.
      args: ['--blob-retry-delay-ms', '600000'],
    });
    const head = await waitForCatchUp(primary, replica, 'app', db, 60_000);
    expect(await waitForDurable(primary, replica, 'app', 60_000)).toBe(head);
    // Logged once the staging is removed, which may follow the durable position by a moment.
    await waitForLogs(replica, (l) => l.msg === 'bootstrap complete: snapshot installed');

    const lines = logs(replica);
    const at = (test: (l: LogLine) => boolean): number[] => lines.flatMap((l, i) => (test(l) ? [i] : []));
    const failed = at((l) => l.msg === 'bootstrap blob save failed; the snapshot is not installed until a re-stream saves it');
    const refused = at((l) => l.msg === 'closing connection' && l['code'] === 'WALWIRE_ERR_BLOB_SAVE_FAILED');
    const started = at((l) => l.msg === 'bootstrap started');
    const resumed = at((l) => l.msg === 'bootstrap resumed');
    const installed = at((l) => l.msg === 'bootstrap complete: snapshot installed');
    // One save failed (the armed one), and it was a bootstrap copy.
    expect(failed).toHaveLength(1);
    expect(lines[failed[0]!]!['code']).toBe('WALWIRE_ERR_FAILPOINT');
    // SNAPSHOT_END of the first attempt refused the install and closed the connection…
    expect(refused).toHaveLength(1);
    expect(refused[0]!).toBeGreaterThan(failed[0]!);
    expect(lines[refused[0]!]!['err']).toMatch(/^bootstrap of app at seq \d+: a blob was not saved/);
    // …then the next connection resumed the very snapshot staged (no second start) and installed it, once.
    expect(started).toHaveLength(1);
    expect(resumed.length).toBeGreaterThanOrEqual(1);
    expect(resumed[0]!).toBeGreaterThan(refused[0]!);
    expect(installed).toHaveLength(1);
    expect(installed[0]!).toBeGreaterThan(resumed[0]!);
    const st = await replicaStatus(replica, 'app');
    expect(st.connection.reconnects).toBeGreaterThanOrEqual(1);
    expect(st.connection.lastError?.code).toBe('WALWIRE_ERR_BLOB_SAVE_FAILED');
    expect(st.ns.blobs.failures).toBe(1);
    expect(st.ns.durableSeq).toBe(head);
    expect(st.ns.gapSeq).toBeNull();

    const files = blobFiles(replicaBlobs);
    expect([...files.keys()].sort()).toEqual([...blobs.keys()].sort());
    for (const [id, body] of blobs) expect(files.get(id)!.equals(body), id).toBe(true);
    expect(existsSync(join(dir, 'r', 'app', 'staging'))).toBe(false);
    await primary.child.terminate();
    await assertConverged({ primaryDb: db, replicaDb });
  }, 90_000);
});
