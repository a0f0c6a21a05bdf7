/**
 * Bootstrap throughput (issue #7): a fresh replica receives a whole database
 * as a snapshot (stream, stage, verify, install: a fresh replica links the
 * staged image in as its database), compared in the same run with the
 * physical limit on the same disk: a plain copy of the same file with an
 * fsync at the end.
 */
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { open, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { type Benchmark, type Figure } from './lib.js';
import { killAll, startPrimary, startReplica, waitCaughtUp } from './streaming-proc.js';

const MB = 1e6;

function makeDatabase(path: string, bytes: number): void {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE blobs(id INTEGER PRIMARY KEY, v BLOB)');
  const insert = db.prepare('INSERT INTO blobs(v) VALUES (?)');
  const row = 16 * 1024;
  const payload = randomBytes(row);
  const rows = Math.ceil(bytes / row);
  for (let done = 0; done < rows; ) {
    const n = Math.min(2000, rows - done);
    db.transaction(() => {
      for (let i = 0; i < n; i++) {
        payload.writeUInt32LE(done + i, 0); // distinct pages, no accidental dedupe
        insert.run(payload);
      }
    })();
    done += n;
  }
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
}

/** The physical baseline: copy the file in 4 MiB slices, fsync, on the same disk. */
async function rawCopy(from: string, to: string): Promise<number> {
  const started = performance.now();
  const src = await open(from, 'r');
  const dst = await open(to, 'w');
  const buf = Buffer.allocUnsafe(4 * 1024 * 1024);
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

export const bootstrapBenchmarks: Benchmark = {
  id: 'bootstrap',
  title: 'Bootstrap: a fresh replica from a snapshot',
  async run(ctx) {
    const target = ctx.quick ? 256 * 1024 * 1024 : 1024 * 1024 * 1024;
    const dir = ctx.tmpDir();
    const db = join(dir, 'app.db');
    ctx.log(`building a ${(target / 2 ** 20).toFixed(0)} MiB database`);
    makeDatabase(db, target);
    const size = (await stat(db)).size;
    const token = randomBytes(8).toString('hex');
    const rounds = ctx.quick ? 1 : 5;
    const copyMs: number[] = [];
    const bootMs: number[] = [];
    let primaryStartMs = 0;
    try {
      const t0 = performance.now();
      const primary = await startPrimary({ dataDir: join(dir, 'p'), db, token });
      primaryStartMs = performance.now() - t0;
      // Each round copies the file and bootstraps a fresh replica, so both
      // meet the same disk: this VM's disk moves between about 250 and 1,800
      // MB/s from minute to minute. The order alternates between rounds. A
      // round's files are deleted at its end, then the disk gets a few
      // seconds (it is mounted with online discard, so a delete of a GiB
      // keeps it busy for a while): keeping them all needed over 12 GiB.
      const copy = async (r: number): Promise<void> => {
        copyMs.push(await rawCopy(db, join(dir, `copy-${r}.db`)));
      };
      const bootstrap = async (r: number): Promise<void> => {
        const started = performance.now();
        const replica = await startReplica({ dataDir: join(dir, `r${r}`), primaryPort: primary.port, token });
        await waitCaughtUp(primary, replica, 600_000);
        bootMs.push(performance.now() - started);
        await replica.proc.stop();
      };
      for (let r = 0; r < rounds; r++) {
        if (r % 2 === 0) {
          await copy(r);
          await bootstrap(r);
        } else {
          await bootstrap(r);
          await copy(r);
        }
        await rm(join(dir, `copy-${r}.db`), { force: true });
        await rm(join(dir, `r${r}`), { recursive: true, force: true });
        await new Promise((resolve) => setTimeout(resolve, 3000));
      }
      await primary.proc.stop();
    } finally {
      killAll();
    }
    const best = (xs: number[]): number => Math.min(...xs);
    const rawRate = size / MB / (best(copyMs) / 1000);
    const bootRate = size / MB / (best(bootMs) / 1000);
    const ratios = bootMs.map((b, i) => copyMs[i]! / b).sort((a, b) => a - b);
    const ratio = ratios[Math.floor(ratios.length / 2)]!;
    const figures: Figure[] = [
      {
        name: `bootstrap throughput, ${(size / 2 ** 20).toFixed(0)} MiB database (replica start → caught up)`,
        value: bootRate,
        unit: 'MB/s',
        baseline: { name: 'copy + fsync of the same file, same disk', value: rawRate, unit: 'MB/s' },
        ratio,
        goal: 'ratio ≥ 0.5',
        met: ratio >= 0.5,
      },
      {
        name: 'primary start with a new generation (reads the database, writes its snapshot image)',
        value: primaryStartMs,
        unit: 'ms',
        baseline: { name: 'copy + fsync of the same file, same disk (fastest round)', value: best(copyMs), unit: 'ms' },
        ratio: primaryStartMs / best(copyMs),
      },
    ];
    return {
      title: this.title,
      issue: 7,
      figures,
      notes: [
        `Rates: best of ${rounds} round(s). Ratio: the median of the ${rounds} rounds' own ratios; each round copies the file and bootstraps a fresh replica, alternating which goes first, so both meet the same disk (rounds, copy / bootstrap MB/s: ${copyMs.map((c, i) => `${(size / MB / (c / 1000)).toFixed(0)} / ${(size / MB / (bootMs[i]! / 1000)).toFixed(0)}`).join(', ')}). The bootstrap includes process start, the snapshot stream over loopback (4 MiB chunks, each read from the image straight into its frame and CRC'd once, against the CRC stored when the primary published the image), staging with a background fdatasync every 32 MiB, each chunk read back, checked against its CRC and hashed into the database checksum on the replica's apply worker while the next ones arrive, and the install: a fresh replica has no database file yet, so the staged image is linked in as the database (page 1 patched, one fdatasync, link, directory fsync) and written only once. The baseline copies the file in 4 MiB slices and fsyncs once. Both share the disk and the 2 cores with whatever else runs on the machine, so the figures move from run to run. The copy's rate is the disk's: it has ranged from about 250 to 1,800 MB/s on this VM between runs, while the bootstrap stays near 180–240 MB/s, which is what the 2 cores allow for three processes' work (primary read and send; replica receive, frame CRC and write; the apply worker's read-back, chunk CRC and SHA-256 page hashes for the database checksum). So the ratio meets its goal when the disk is at its slower rates and not at its fastest.`,
      ],
    };
  },
};
