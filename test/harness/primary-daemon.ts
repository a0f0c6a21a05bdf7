/**
 * Cross-process helpers for the primary: a daemon child (fixtures/
 * primary-daemon.ts) whose event lines the test can wait on, a step writer,
 * and log verification that rebuilds the database from the log, seq by seq.
 */
import { DatabaseChecksum } from '@walwire/protocol';
import { ReplicationLog, type LogRecord, type PrimaryOptions, type PrimaryStatus } from '@walwire/primary';
import { silentLogger } from '@walwire/runtime';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { type Child, spawnFixture } from './processes.js';

export interface RecordLine {
  readonly ns: string;
  readonly seq: number;
  readonly kind: string;
  readonly generation: string;
  readonly checksum: string | null;
  readonly commitSize: number | null;
  readonly commits: number;
  readonly pages: number;
}

export interface GenerationLine {
  readonly ns: string;
  readonly generation: string;
  readonly previous: string | null;
  readonly reason: string;
  readonly checksum: string;
  readonly commitSize: number;
}

export type PrimaryDaemonOptions = Omit<PrimaryOptions, 'logger'>;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function parse<T>(lines: readonly string[], kind: string): T[] {
  const prefix = `${kind} `;
  return lines.filter((l) => l.startsWith(prefix)).map((l) => JSON.parse(l.slice(prefix.length)) as T);
}

/** The primary library running in its own process. */
export class PrimaryDaemon {
  readonly child: Child;

  private constructor(child: Child) {
    this.child = child;
  }

  static async start(options: PrimaryDaemonOptions, env: Readonly<Record<string, string>> = {}): Promise<PrimaryDaemon> {
    const d = new PrimaryDaemon(spawnFixture('primary-daemon', [JSON.stringify(options)], { env }));
    await d.child.waitForLine(/^ready /);
    return d;
  }

  /** Spawns without waiting for `ready` (for daemons expected to die early). */
  static spawn(options: PrimaryDaemonOptions, env: Readonly<Record<string, string>> = {}): PrimaryDaemon {
    return new PrimaryDaemon(spawnFixture('primary-daemon', [JSON.stringify(options)], { env }));
  }

  records(ns?: string): RecordLine[] {
    return parse<RecordLine>(this.child.lines, 'record').filter((r) => ns === undefined || r.ns === ns);
  }

  generations(ns?: string): GenerationLine[] {
    return parse<GenerationLine>(this.child.lines, 'generation').filter((g) => ns === undefined || g.ns === ns);
  }

  lines<T>(kind: string): T[] {
    return parse<T>(this.child.lines, kind);
  }

  /** Waits until a record line satisfies `test`. */
  async waitForRecord(test: (r: RecordLine) => boolean, timeoutMs = 20_000): Promise<RecordLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.records().find(test);
      if (hit !== undefined) return hit;
      if (this.child.process.exitCode !== null || this.child.process.signalCode !== null) {
        throw new Error(`primary daemon exited while waiting for a record; stderr: ${this.child.stderr.slice(-5).join(' | ')}`);
      }
      if (Date.now() > deadline) throw new Error(`no matching record within ${timeoutMs} ms; last: ${JSON.stringify(this.records().at(-1))}`);
      await sleep(5);
    }
  }

  /** Waits for a txn record of `ns` whose checksum is `checksum`. */
  waitForChecksum(ns: string, checksum: string, timeoutMs = 20_000): Promise<RecordLine> {
    return this.waitForRecord((r) => r.ns === ns && r.checksum === checksum, timeoutMs);
  }

  async status(): Promise<PrimaryStatus> {
    const before = parse<PrimaryStatus>(this.child.lines, 'status').length;
    this.child.process.stdin!.write('status\n');
    const deadline = Date.now() + 10_000;
    for (;;) {
      const all = parse<PrimaryStatus>(this.child.lines, 'status');
      if (all.length > before) return all.at(-1)!;
      if (Date.now() > deadline) throw new Error('no status answer');
      await sleep(5);
    }
  }

  /** Clean stop through stdin; throws unless the daemon exits 0. */
  async stop(): Promise<void> {
    this.child.process.stdin!.write('stop\n');
    await this.child.succeeded(30_000);
  }
}

/** A better-sqlite3 writer in its own process that runs one SQL step at a time. */
export class StepWriter {
  readonly child: Child;
  #n = 0;

  private constructor(child: Child) {
    this.child = child;
  }

  static async start(dbPath: string): Promise<StepWriter> {
    const w = new StepWriter(spawnFixture('primary-stepwriter', [dbPath]));
    await w.child.waitForLine(/^ready$/);
    return w;
  }

  /** Runs `sql` (db.exec) in the writer process; resolves when it returned. */
  async exec(sql: string): Promise<void> {
    const n = ++this.#n;
    this.child.process.stdin!.write(`${JSON.stringify(sql)}\n`);
    const line = await this.child.waitForLine(new RegExp(`^(ok|err) ${n}( |$)`));
    if (line.startsWith('err')) throw new Error(`writer step ${n} failed: ${line}`);
  }

  async close(): Promise<void> {
    this.child.process.stdin!.write('close\n');
    await this.child.succeeded();
  }
}

/** The database checksum of a whole image, as the primary computes it. */
export function imageChecksum(image: Uint8Array, pageSize: number): string {
  const sum = new DatabaseChecksum(Math.max(16, image.length / pageSize));
  sum.addImage(image, pageSize);
  return sum.value;
}

/** Applies one txn's pages to an image: resize to commitSize pages, then write the pages. */
export function applyTxnToImage(image: Buffer, pages: readonly { pgno: number; data: Uint8Array }[], commitSize: number, pageSize: number): Buffer {
  const out = Buffer.alloc(commitSize * pageSize);
  image.copy(out, 0, 0, Math.min(image.length, out.length));
  for (const p of pages) out.set(p.data, (p.pgno - 1) * pageSize);
  return out;
}

export interface LogContents {
  readonly generation: string;
  readonly reason: string;
  readonly base: { readonly checksum: string; readonly commitSize: number; readonly pageSize: number };
  readonly firstSeq: number;
  readonly records: LogRecord[];
}

/** Opens a namespace's log (its daemon must be stopped) and reads every record. */
export async function readPrimaryLog(dataDir: string, ns: string): Promise<LogContents> {
  const log = await ReplicationLog.open({ dir: join(dataDir, ns, 'log'), segmentBytes: 64 * 1024 * 1024, logger: silentLogger() });
  try {
    const records = await log.readRange(log.firstSeq);
    return { generation: log.generation ?? '', reason: log.reason, base: log.base!, firstSeq: log.firstSeq, records };
  } finally {
    await log.close();
  }
}

/**
 * Rebuilds the database from `base` through every txn record, checking each
 * seq's checksum against the rebuilt image, and calls `visit` with the image
 * after each seq. Throws on the first mismatch or seq gap.
 */
export function rebuildFromLog(base: Buffer, contents: LogContents, visit?: (seq: number, image: Buffer) => void): Buffer {
  const pageSize = contents.base.pageSize;
  let image = base;
  let expected = contents.firstSeq;
  for (const r of contents.records) {
    if (r.seq !== expected) throw new Error(`seq ${r.seq} follows seq ${expected - 1}: gap or duplicate`);
    expected++;
    if (r.kind !== 'txn') continue;
    image = applyTxnToImage(image, r.txn.pages, r.txn.commitSize, pageSize);
    const sum = imageChecksum(image, pageSize);
    if (sum !== r.txn.checksum) throw new Error(`seq ${r.seq}: rebuilt image checksum ${sum} differs from the logged ${r.txn.checksum}`);
    visit?.(r.seq, image);
  }
  return image;
}

/**
 * SQLite's own view of a database, read in one read transaction with
 * sqlite3_serialize. The backup-API image (readDatabaseImage) steps through
 * the source in several read transactions; while the daemon checkpoints
 * concurrently it was seen to return an image a few pages short, so the
 * primary tests take this one.
 */
export function readDatabaseSnapshot(dbPath: string): Buffer {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true, timeout: 10_000 });
  try {
    db.exec('BEGIN');
    db.prepare('SELECT count(*) FROM sqlite_schema').get();
    const image = db.serialize();
    db.exec('COMMIT');
    return image;
  } finally {
    db.close();
  }
}
