/**
 * Writers in other processes: the sqlite3 CLI and better-sqlite3 scripts
 * (fixtures/writer.ts). Tests never write the primary database from the test
 * process itself, so the daemon under test sees a real foreign writer.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { type Child, spawnFixture } from './processes.js';

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
