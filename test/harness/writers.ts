/**
 * Writers in other processes: the sqlite3 CLI and better-sqlite3 scripts
 * (fixtures/writer.ts). Tests never write the primary database from the test
 * process itself, so the daemon under test sees a real foreign writer.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { parseDatabaseHeader } from '@walwire/protocol';
import { type Child, spawnFixture } from './processes.js';
import { makeTempDir } from './tmp.js';

export const SQLITE3_CLI = process.env['WALWIRE_SQLITE3'] ?? '/usr/bin/sqlite3';

/** Runs SQL through the sqlite3 command-line shell; returns its stdout. */
export function sqlite3Cli(dbPath: string, sql: string): string {
  if (!existsSync(SQLITE3_CLI)) {
    throw new Error(`sqlite3 CLI not found at ${SQLITE3_CLI}: install it (apt-get install -y sqlite3) or set WALWIRE_SQLITE3`);
  }
  return execFileSync(SQLITE3_CLI, ['-bail', dbPath], { input: sql, encoding: 'utf8', timeout: 60_000 });
}

/** Workload a writer fixture runs; see fixtures/writer.ts. */
export type WriterSpec =
  | {
      /** Each string goes to db.exec() on its own: one or more statements, BEGIN…COMMIT allowed. */
      readonly mode: 'script';
      readonly statements: readonly string[];
    }
  | {
      /** Inserts into load(id, v) with rowsPerTxn rows a transaction. */
      readonly mode: 'load';
      readonly txns: number;
      readonly rowsPerTxn: number;
      readonly payloadBytes: number;
      /** Commits per second; 0 means as fast as possible. */
      readonly ratePerSec: number;
    }
  | {
      /** Transfers between accounts; the sum of balances is constant. */
      readonly mode: 'bank';
      readonly accounts: number;
      readonly txns: number;
      readonly ratePerSec: number;
    };

export interface WriterOptions {
  readonly db: string;
  /** Switch the database to WAL mode first. @default true */
  readonly wal?: boolean;
}

/**
 * Starts a better-sqlite3 writer in its own process. It prints `ready`, then
 * `committed N` after each transaction of load/bank, then `done N`.
 */
export function spawnWriter(options: WriterOptions, spec: WriterSpec): Child {
  return spawnFixture('writer', [JSON.stringify({ db: options.db, wal: options.wal ?? true, ...spec })]);
}

/** Runs a writer to completion. */
export async function runWriter(options: WriterOptions, spec: WriterSpec): Promise<void> {
  await spawnWriter(options, spec).succeeded();
}

/** The total every bank workload keeps constant. */
export const BANK_TOTAL_PER_ACCOUNT = 1000;

/**
 * Starts a read-only reader that loops over the bank and load invariants and
 * prints `violation …` lines. It prints `checks N violations M` on SIGTERM.
 */
export function spawnInvariantReader(dbPath: string, busyTimeoutMs = 5000, pauseMs = 0): Child {
  return spawnFixture('reader', [JSON.stringify({ db: dbPath, busyTimeoutMs, pauseMs })]);
}

/**
 * A small database in rollback-journal mode written by the sqlite3 CLI (60
 * rows of 500 random bytes and an index on them), with its bytes, as tests
 * of hand-built journals start from.
 */
export function makeRollbackDb(): { db: string; original: Buffer; pageSize: number; pages: number } {
  const db = join(makeTempDir('walwire-rollback-'), 'replica.db');
  sqlite3Cli(
    db,
    [
      'PRAGMA journal_mode=DELETE;',
      'CREATE TABLE a(id INTEGER PRIMARY KEY, v BLOB);',
      'WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 60) INSERT INTO a(v) SELECT randomblob(500) FROM n;',
      'CREATE INDEX a_v ON a(v);',
    ].join('\n'),
  );
  const original = readFileSync(db);
  const pageSize = parseDatabaseHeader(original).pageSize;
  expect(original[18]).toBe(1); // rollback-journal mode
  return { db, original, pageSize, pages: original.length / pageSize };
}

/** Page `pgno` (1-based) of a database image. */
export function pageOf(image: Uint8Array, pgno: number, pageSize: number): Uint8Array {
  return image.subarray((pgno - 1) * pageSize, pgno * pageSize);
}
