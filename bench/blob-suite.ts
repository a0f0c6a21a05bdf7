/**
 * Blob figures (issue 6), with real processes on loopback:
 * - throughput of replicating a 1 GiB blob, from the end of its PUT on the
 *   primary (the BLOB_PUT event is appended before the answer) until the
 *   replica's durable seq reaches that event (content written, SHA-256
 *   checked, fsynced, renamed); goal ≥ 300 MB/s. Baselines in the same run:
 *   a copy + fsync of the same file on the same disk, and the same bytes
 *   pushed through a plain loopback TCP socket to another process. The
 *   upload (PUT) throughput is reported apart;
 * - the replica's peak RSS during that transfer (VmRSS every 100 ms); goal
 *   < 150 MB;
 * - transaction lag while the blob streams: a writer process commits small
 *   transactions at 200/s throughout, and the primary's
 *   /v1/status → replicas[].lagMs is sampled every 50 ms, during the blob
 *   and in a window without one.
 *
 * While tuning: WALWIRE_BENCH_BLOB_PRIMARY_ARGS adds flags to the primary
 * (e.g. "--blob-chunk-bytes 1048576"), WALWIRE_BENCH_BLOB_ROUNDS sets the
 * number of rounds (default 3, so the median is a middle round); both are
 * named in the section when set.
 */
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFileSync } from 'node:fs';
import { open, unlink } from 'node:fs/promises';
import { request } from 'node:http';
import { connect } from 'node:net';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { type Benchmark, type Figure, median, percentile } from './lib.js';
import { Daemon, Proc, benchScript, killAll, rss, sleep } from './streaming-proc.js';

const TOKEN = randomBytes(16).toString('hex');
const MiB = 1024 * 1024;
const MB = 1e6;
const WRITER_RATE = 200;
const LAG_SAMPLE_MS = 50;
const RSS_SAMPLE_MS = 100;
const IDLE_WINDOW_MS = 4000;

const fmt = (n: number, d = 1): string => n.toFixed(d);

/** CPU time (user + system, all threads) of `pid` so far, ms. */
function cpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // clock ticks (USER_HZ 100)
}

/** `size` bytes of incompressible content, fsynced (a 64 MiB random pool, each 4 MiB slice stamped). */
async function makeBlobFile(path: string, size: number): Promise<void> {
  const pool = randomBytes(64 * MiB + 4 * MiB);
  const fh = await open(path, 'w');
  const slice = 4 * MiB;
  for (let at = 0, i = 0; at < size; at += slice, i++) {
    const off = ((i * 7919) % 16) * 4 * MiB + (i % 4096);
    const buf = Buffer.from(pool.subarray(off, off + Math.min(slice, size - at)));
    buf.writeUInt32LE(i, 0);
    await fh.write(buf, 0, buf.length, at);
  }
  await fh.sync();
  await fh.close();
}

/** Baseline (a): copy in 4 MiB slices and fsync, on the same disk. Returns ms. */
async function rawCopy(from: string, to: string): Promise<number> {
  const started = performance.now();
  const src = await open(from, 'r');
  const dst = await open(to, 'w');
  const buf = Buffer.allocUnsafe(4 * MiB);
  for (let at = 0; ; ) {
    const { bytesRead } = await src.read(buf, 0, buf.length, at);
    if (bytesRead === 0) break;
    await dst.write(buf, 0, bytesRead, at);
    at += bytesRead;
  }
  await dst.sync();
  await src.close();
  await dst.close();
  return performance.now() - started;
}

/** Baseline (b): the file's bytes through a loopback TCP socket to a sink process. Returns ms (connected → sink's 1-byte answer). */
async function tcpPush(file: string, size: number): Promise<number> {
  const sink = new Proc('blob-sink', [benchScript('blob-sink'), JSON.stringify({ bytes: size })], { keepLines: 5 });
  try {
    const { port } = JSON.parse(await sink.waitForLine(/"port"/, 30_000)) as { port: number };
    const socket = connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const started = performance.now();
    const answered = new Promise<number>((resolve, reject) => {
      socket.once('data', () => resolve(performance.now()));
      socket.once('error', reject);
    });
    createReadStream(file, { highWaterMark: MiB }).pipe(socket, { end: false });
    const ms = (await answered) - started;
    socket.destroy();
    await sink.waitForLine(/"received"/, 30_000);
    return ms;
  } finally {
    sink.kill9();
  }
}

/** PUT the file as blob `id`, streamed from disk. */
function putBlob(primary: Daemon, id: string, file: string, size: number): Promise<{ seq: number; sha256: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: primary.port,
        method: 'PUT',
        path: `/v1/namespaces/app/blobs/${id}`,
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/octet-stream', 'content-length': String(size) },
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => {
          const body = Buffer.concat(parts).toString('utf8');
          if (res.statusCode !== 201 && res.statusCode !== 200) reject(new Error(`PUT ${id}: HTTP ${res.statusCode} ${body}`));
          else resolve(JSON.parse(body) as { seq: number; sha256: string });
        });
      },
    );
    req.on('error', reject);
    createReadStream(file, { highWaterMark: MiB }).pipe(req);
  });
}

async function deleteBlob(primary: Daemon, id: string): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${primary.port}/v1/namespaces/app/blobs/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${TOKEN}` } });
  const body = (await res.json()) as { seq: number };
  if (res.status !== 200) throw new Error(`DELETE ${id}: HTTP ${res.status} ${JSON.stringify(body)}`);
  return body.seq;
}

async function waitDurable(replica: Daemon, seq: number, timeoutMs: number): Promise<void> {
  const res = await replica.get(`/v1/namespaces/app/wait?seq=${seq}&durable=1&timeoutMs=${timeoutMs}`);
  if (res.status !== 200) throw new Error(`replica durable seq never reached ${seq}: HTTP ${res.status} ${JSON.stringify(res.body)}`);
}

interface Sample {
  readonly t: number;
  readonly v: number;
}

/** Samples `read` every `everyMs` (sequentially: a slow read delays the next one) until stopped. */
function sampler(everyMs: number, read: () => Promise<number | undefined> | number | undefined): { samples: Sample[]; stop: () => Promise<void> } {
  const samples: Sample[] = [];
  let running = true;
  const loop = (async () => {
    let next = performance.now();
    while (running) {
      const t = performance.now();
      try {
        const v = await read();
        if (v !== undefined) samples.push({ t, v });
      } catch {
        // a process gone at the end; ignore
      }
      next = Math.max(next + everyMs, performance.now());
      await sleep(next - performance.now());
    }
  })();
  return {
    samples,
    stop: async () => {
      running = false;
      await loop;
    },
  };
}

const within = (samples: readonly Sample[], from: number, to: number): number[] => samples.filter((s) => s.t >= from && s.t <= to).map((s) => s.v);

interface Round {
  readonly copyMs: number;
  readonly tcpMs: number;
  readonly putMs: number;
  readonly replicateMs: number;
  readonly rssBeforeMb: number;
  readonly rssPeakMb: number;
  readonly primaryRssPeakMb: number;
  /** CPU seconds per GB of blob while it replicated (PUT answered → durable). */
  readonly primaryCpuPerGb: number;
  readonly replicaCpuPerGb: number;
  readonly lagIdle: number[];
  readonly lagBlob: number[];
}

export const blobBenchmarks: Benchmark = {
  id: 'blobs',
  title: 'Blobs',
  async run(ctx) {
    const suiteStarted = performance.now();
    const loadStart = loadavg()[0]!;
    const size = ctx.quick ? 256 * MiB : 1024 * MiB;
    const rounds = Number(process.env['WALWIRE_BENCH_BLOB_ROUNDS'] ?? (ctx.quick ? 1 : 3));
    const extraArgs = (process.env['WALWIRE_BENCH_BLOB_PRIMARY_ARGS'] ?? '').split(/\s+/).filter((s) => s !== '');
    const dir = ctx.tmpDir();
    const blob = join(dir, 'blob.bin');
    ctx.log(`writing a ${size / MiB} MiB blob file`);
    await makeBlobFile(blob, size);

    const db = join(dir, 'app.db');
    const init = new Database(db);
    init.pragma('journal_mode = WAL');
    init.exec('CREATE TABLE lag(id INTEGER PRIMARY KEY, t REAL NOT NULL, last INTEGER NOT NULL, pad BLOB)');
    init.close();

    const results: Round[] = [];
    let writerCommits = 0;
    let primaryWarnings = 'none';
    let replicaWarnings = 'none';
    try {
      const primary = await Daemon.start('primary', ['--db', `app=${db}`, '--data-dir', join(dir, 'p'), '--port', '0', ...extraArgs], TOKEN);
      const replica = await Daemon.start(
        'replica',
        ['--primary', `ws://127.0.0.1:${primary.port}/v1/replicate`, '--namespaces', 'app', '--data-dir', join(dir, 'r'), '--port', '0', '--reconnect-max-ms', '500'],
        TOKEN,
      );
      const head = await primary.get('/v1/namespaces/app/head');
      await waitDurable(replica, head.body['seq'] as number, 60_000);

      const writer = new Proc('streaming-writer', [benchScript('streaming-writer'), JSON.stringify({ mode: 'rows', db, table: 'lag', ratePerSec: WRITER_RATE, seconds: 3600, padBytes: 32 })], { keepLines: 3 });
      const lag = sampler(LAG_SAMPLE_MS, async () => {
        const st = await primary.get('/v1/status');
        const ns = (st.body['namespaces'] as { name: string; replicas: { lagMs: number }[] }[]).find((n) => n.name === 'app');
        return ns?.replicas[0]?.lagMs;
      });
      const replicaRss = sampler(RSS_SAMPLE_MS, () => rss(replica.proc.pid).mb);
      const primaryRss = sampler(RSS_SAMPLE_MS, () => rss(primary.proc.pid).mb);
      try {
        await sleep(1000); // the writer settles in
        for (let r = 0; r < rounds; r++) {
          ctx.log(`round ${r + 1}/${rounds}: baselines`);
          const copy = join(dir, `copy-${r}.bin`);
          const copyMs = await rawCopy(blob, copy);
          await unlink(copy);
          const tcpMs = await tcpPush(blob, size);

          const idleFrom = performance.now();
          await sleep(IDLE_WINDOW_MS);
          const idleTo = performance.now();

          ctx.log(`round ${r + 1}/${rounds}: PUT and replicate`);
          const id = `big-${r}.bin`;
          const putStart = performance.now();
          const put = await putBlob(primary, id, blob, size);
          const putEnd = performance.now();
          const cpu0 = [cpuMs(primary.proc.pid), cpuMs(replica.proc.pid)];
          await waitDurable(replica, put.seq, 600_000);
          const durableAt = performance.now();
          const cpu1 = [cpuMs(primary.proc.pid), cpuMs(replica.proc.pid)];
          ctx.log(`round ${r + 1}: PUT ${fmt(size / MB / ((putEnd - putStart) / 1000), 0)} MB/s, replication ${fmt(size / MB / ((durableAt - putEnd) / 1000), 0)} MB/s`);

          results.push({
            copyMs,
            tcpMs,
            putMs: putEnd - putStart,
            replicateMs: durableAt - putEnd,
            rssBeforeMb: median(within(replicaRss.samples, putStart - 1000, putStart)),
            rssPeakMb: Math.max(...within(replicaRss.samples, putStart, durableAt + RSS_SAMPLE_MS)),
            primaryRssPeakMb: Math.max(...within(primaryRss.samples, putStart, durableAt + RSS_SAMPLE_MS)),
            primaryCpuPerGb: (cpu1[0]! - cpu0[0]!) / 1000 / (size / 1e9),
            replicaCpuPerGb: (cpu1[1]! - cpu0[1]!) / 1000 / (size / 1e9),
            lagIdle: within(lag.samples, idleFrom, idleTo),
            lagBlob: within(lag.samples, putEnd, durableAt),
          });
          await waitDurable(replica, await deleteBlob(primary, id), 60_000);
        }
      } finally {
        await lag.stop();
        await replicaRss.stop();
        await primaryRss.stop();
        writer.kill9();
      }
      writerCommits = (await primary.get('/v1/namespaces/app/head')).body['seq'] as number;
      primaryWarnings = primary.warningSummary();
      replicaWarnings = replica.warningSummary();
      await replica.proc.stop();
      await primary.proc.stop();
    } finally {
      killAll();
    }

    const rate = (ms: number): number => size / MB / (ms / 1000);
    const mid = (pick: (r: Round) => number): number => median(results.map(pick));
    const range = (pick: (r: Round) => number, d = 0): string => {
      const xs = results.map(pick);
      return `${fmt(Math.min(...xs), d)}–${fmt(Math.max(...xs), d)}`;
    };
    const repl = mid((r) => rate(r.replicateMs));
    const copy = mid((r) => rate(r.copyMs));
    const tcp = mid((r) => rate(r.tcpMs));
    const put = mid((r) => rate(r.putMs));
    const rssPeak = Math.max(...results.map((r) => r.rssPeakMb));
    const rssBefore = mid((r) => r.rssBeforeMb);
    const lagIdle = results.flatMap((r) => r.lagIdle);
    const lagBlob = results.flatMap((r) => r.lagBlob);
    const sizeLabel = `${size / MiB} MiB`;
    const roundsNote = `median of ${rounds} round(s); per round`;

    const figures: Figure[] = [
      {
        name: `blob replication, ${sizeLabel} (PUT answered → durable on the replica)`,
        value: repl,
        unit: 'MB/s',
        baseline: { name: 'copy + fsync of the same file, same disk', value: copy, unit: 'MB/s' },
        ratio: repl / copy,
        goal: '≥ 300 MB/s',
        met: repl >= 300,
        note: `${roundsNote} ${results.map((r) => fmt(rate(r.replicateMs), 0)).join(', ')} MB/s (copy + fsync ${results.map((r) => fmt(rate(r.copyMs), 0)).join(', ')} MB/s); CPU time (user + system, all threads, including the 200/s transaction stream that runs meanwhile) per GB while replicating: primary ${results.map((r) => fmt(r.primaryCpuPerGb, 2)).join(', ')} s, replica ${results.map((r) => fmt(r.replicaCpuPerGb, 2)).join(', ')} s`,
      },
      {
        name: `blob replication, ${sizeLabel}, against the network alone`,
        value: repl,
        unit: 'MB/s',
        baseline: { name: 'the same bytes through a plain loopback TCP socket to another process', value: tcp, unit: 'MB/s' },
        ratio: repl / tcp,
        note: `loopback TCP per round ${results.map((r) => fmt(rate(r.tcpMs), 0)).join(', ')} MB/s`,
      },
      {
        name: `blob upload, ${sizeLabel} (PUT request start → answer)`,
        value: put,
        unit: 'MB/s',
        baseline: { name: 'copy + fsync of the same file, same disk', value: copy, unit: 'MB/s' },
        ratio: put / copy,
        note: `per round ${results.map((r) => fmt(rate(r.putMs), 0)).join(', ')} MB/s`,
      },
      {
        name: 'replica peak RSS during the transfer (PUT start → durable)',
        value: rssPeak,
        unit: 'MB',
        baseline: { name: 'replica RSS in the second before the PUT', value: rssBefore, unit: 'MB' },
        ratio: rssPeak / rssBefore,
        goal: '< 150 MB',
        met: rssPeak < 150,
        note: `max over all rounds; per round ${results.map((r) => fmt(r.rssPeakMb)).join(', ')} MB (before ${results.map((r) => fmt(r.rssBeforeMb)).join(', ')} MB); primary peak ${results.map((r) => fmt(r.primaryRssPeakMb)).join(', ')} MB`,
      },
      {
        name: `transaction lag p50 while the blob streams (${WRITER_RATE} commits/s)`,
        value: median(lagBlob),
        unit: 'ms',
        p99: percentile(lagBlob, 99),
        baseline: { name: 'same writer, no blob, p50', value: median(lagIdle), unit: 'ms' },
        ratio: median(lagIdle) > 0 ? median(lagBlob) / median(lagIdle) : undefined,
        note: `${lagBlob.length} samples during the blob (max ${fmt(Math.max(...lagBlob), 0)} ms), ${lagIdle.length} without (max ${fmt(Math.max(...lagIdle), 0)} ms)`,
      },
      {
        name: `transaction lag p99 while the blob streams (${WRITER_RATE} commits/s)`,
        value: percentile(lagBlob, 99),
        unit: 'ms',
        baseline: { name: 'same writer, no blob, p99', value: percentile(lagIdle, 99), unit: 'ms' },
        ratio: percentile(lagIdle, 99) > 0 ? percentile(lagBlob, 99) / percentile(lagIdle, 99) : undefined,
      },
    ];
    return {
      title: this.title,
      issue: 6,
      figures,
      notes: [
        `Processes: walwire-primary and walwire-replica from their built CLIs on loopback (${extraArgs.length === 0 ? 'default options: blobChunkBytes, maxBlobsInFlight, blobWindowBytes at their defaults' : `primary flags added for this run: \`${extraArgs.join(' ')}\``}), one ${sizeLabel} blob of random bytes per round, PUT from the benchmark process (streamed from the file, which is in the page cache), and a writer process committing one 32-byte row per transaction at ${WRITER_RATE}/s throughout every round (${writerCommits} seqs in all). Replication time runs from the PUT's answer (the BLOB_PUT event is appended before it) to the answer of the replica's \`/v1/namespaces/app/wait?seq=…&durable=1\`: chunks streamed with CRC-32 each, hashed with SHA-256, written to a temp file, fsynced, renamed, directory fsynced, durable cursor advanced. Each round deletes its blob (and waits for the delete to be durable) before the next.`,
        `Baselines, each round right before its blob: (a) the file copied in 4 MiB slices to the same disk with one fsync; (b) the file read in 1 MiB slices and written to a loopback TCP socket, to a separate node process that counts and drops the bytes (connected → its 1-byte answer). Upload and replication figures are medians of ${rounds} round(s); RSS is the maximum over the rounds, VmRSS from /proc every ${RSS_SAMPLE_MS} ms.`,
        `Lag: the primary's \`/v1/status\` → replicas[].lagMs (the age of the oldest commit sent and not yet acknowledged as applied; 0 when every commit is applied) sampled every ${LAG_SAMPLE_MS} ms (one request at a time), pooled over the rounds: during the blob (PUT answered → durable) and in a ${IDLE_WINDOW_MS / 1000} s window without a blob right before each PUT, same writer. Samples land at random moments of a 5 ms commit interval, so the median is mostly 0 when commits apply within a few ms; the p99 shows the delays.`,
        `Memory: the replica's RSS rises during the first blob and stays near that level afterwards (freed 256 KiB frame buffers are kept by the allocator and V8's external-memory heuristics, not live data: the live blob data is bounded by the 4 MiB credit window), so "before" in later rounds already includes it; the growth during a later transfer is small. Sampled inside the replica during a transfer: V8 heap about 17 MB throughout, ArrayBuffers swinging between 10 and 33 MB as garbage collections free the socket reads and WebSocket reassemblies, RSS about 137 MB. Forcing collections more often (a full or young-generation GC every 16–24 MB received) did not lower the peak, since the allocator keeps the freed memory either way; capping the apply worker's young generation at 4 MB lowered the replica's RSS by 4–10 MB.`,
        `Tuning (measured with 512 MiB blobs, no writer, same machine, under similar load): building each BLOB_CHUNK frame around its content in place (the file read straight into the frame, the content CRC-32'd once for its field and the envelope; the replica still checks the envelope CRC before parsing anything, as invariant 4 requires) cut the primary's CPU per GB while replicating from 2.6–3.1 s to 1.8–2.4 s and raised throughput from 97–134 MB/s to 155–212 MB/s. blobChunkBytes 1 MiB, blobWindowBytes 16 MiB and both together were not faster (139–167 MB/s against 155–193 MB/s for the defaults in the same series), 1 MiB chunks raised the replica's CPU per GB, and a 16 MiB window raised the replica's peak RSS to 161–183 MB; 64 KiB chunks were slower (89–138 MB/s). The defaults (256 KiB chunks, 4 MiB window, 4 blobs in flight) are kept. Two later changes, measured with this suite (1 GiB, writer running): the primary reuses chunk frame memory once a frame is flushed (a fresh 256 KiB buffer per chunk had V8 run a full collection every few hundred MB for external memory), which took the primary from 2.5–2.9 s to 1.8–2.0 s of CPU per GB; and the replica computes a chunk frame's envelope CRC in three pieces around the content and combines them, which yields the content's own CRC from the same pass (it used to read the content a second time for it). Throughput went from 270–286 MB/s to 304–327 MB/s in back-to-back runs. The replica side (one SHA-256 pass, one CRC pass, WebSocket reassembly copy, the write) is the more expensive one.`,
        `The machine is a shared 2-core VM on which other agents run tests at the same time (1-minute load average ${fmt(loadStart, 2)} when the suite started, ${fmt(loadavg()[0]!, 2)} when it ended); throughput ranges over rounds: replication ${range((r) => rate(r.replicateMs))} MB/s, upload ${range((r) => rate(r.putMs))} MB/s, copy + fsync ${range((r) => rate(r.copyMs))} MB/s, TCP ${range((r) => rate(r.tcpMs))} MB/s. Warnings: primary ${primaryWarnings}; replica ${replicaWarnings}. Suite run time ${fmt((performance.now() - suiteStarted) / 1000, 0)} s.`,
      ],
    };
  },
};
