/**
 * The daemon sentinel: `<data-dir>/daemon.running` exists while a daemon
 * runs and is removed on a clean shutdown (SIGTERM/SIGINT, or `stop()`).
 * Found at start, it means the previous run ended without one (kill -9, a
 * crash, power loss): the daemon then logs that it verifies its state, and
 * what the verification did (log tails cut, hot journals rolled back,
 * positions decided by checksum). The verification itself runs at every
 * start anyway; the sentinel decides how loudly it is reported.
 *
 * The file is written durably (temp, fsync, rename, directory fsync), so a
 * crash right after start still leaves it behind.
 */
import { readFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fsyncDir, writeFileDurable } from './durable-fs.js';

export const SENTINEL_FILE = 'daemon.running';

export interface SentinelRecord {
  readonly role: string;
  readonly pid: number;
  /** ms since the epoch. */
  readonly startedAt: number;
}

export class DaemonSentinel {
  readonly path: string;
  /** The sentinel a previous run left behind (null after a clean shutdown or on first start). */
  readonly previous: SentinelRecord | 'unreadable' | null;
  #released = false;

  private constructor(path: string, previous: SentinelRecord | 'unreadable' | null) {
    this.path = path;
    this.previous = previous;
  }

  /** True when the previous run did not shut down cleanly. */
  get unclean(): boolean {
    return this.previous !== null;
  }

  /** Reads a leftover sentinel, then writes this run's. */
  static async acquire(dataDir: string, role: string): Promise<DaemonSentinel> {
    await mkdir(dataDir, { recursive: true });
    const path = join(dataDir, SENTINEL_FILE);
    let previous: SentinelRecord | 'unreadable' | null = null;
    try {
      const parsed = JSON.parse(readFileSync(path, 'utf8')) as Partial<SentinelRecord>;
      previous = typeof parsed.pid === 'number' && typeof parsed.startedAt === 'number' ? { role: String(parsed.role), pid: parsed.pid, startedAt: parsed.startedAt } : 'unreadable';
    } catch (err) {
      // Missing: clean. Present but torn (crash while writing it): unclean.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') previous = 'unreadable';
    }
    const record: SentinelRecord = { role, pid: process.pid, startedAt: Date.now() };
    await writeFileDurable(path, `${JSON.stringify(record)}\n`);
    return new DaemonSentinel(path, previous);
  }

  /** Removes the sentinel: the shutdown was clean. Idempotent. */
  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    await rm(this.path, { force: true });
    await fsyncDir(join(this.path, '..'));
  }
}
