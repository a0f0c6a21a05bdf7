/**
 * Regression (found by the chaos soak): a bootstrap asked for right after
 * the log started a new generation (here: the retry after a failed append;
 * also a discontinuity seen while running) was served the previous
 * generation's snapshot image, which was still the latest until #establish
 * wrote the new one. A replica of the previous generation that had already
 * streamed past that image installed it and went back in time: the soak's
 * invariant reader saw journal_rows shrink on a replica. openSnapshot now
 * serves only an image of the log's current generation, waiting for it.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Primary } from '@walwire/primary';
import { armFailpoint, disarmAllFailpoints, silentLogger } from '@walwire/runtime';
import { makeTempDir, sqlite3Cli, useHarness } from './harness/index.js';

useHarness();

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(test: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!test()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe('bootstrap images follow the log generation', () => {
  it('openSnapshot during a new generation waits for its image instead of serving the previous generation\'s', async () => {
    const dir = makeTempDir();
    const db = join(dir, 'app.db');
    // The writer is the sqlite3 CLI, in other processes: this process holds
    // the daemon's connection and must not open the database itself.
    sqlite3Cli(db, 'PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);');
    const primary = new Primary({ dataDir: join(dir, 'data'), namespaces: { app: { path: db } }, namespaceRetryMs: 50, logger: silentLogger() });
    await primary.start();
    try {
      const ns = primary.namespace('app');
      sqlite3Cli(db, "INSERT INTO t(v) VALUES ('one');");
      await until(() => ns.head().seq >= 1, 'the first commit in the log');
      const first = ns.head().generation;
      // The next append fails: the namespace retries, reopens the log and
      // starts a new generation, then waits before writing its image.
      armFailpoint('primary.log.append', 'throw@1');
      armFailpoint('primary.establish.before-image', 'delay(1500)');
      sqlite3Cli(db, "INSERT INTO t(v) VALUES ('two');");
      await until(() => ns.log.generation !== first, 'the new generation');
      const second = ns.log.generation;
      const started = Date.now();
      const source = await ns.openSnapshot();
      try {
        expect(source.generation, 'the image served is of the log\'s generation').toBe(second);
        expect(Date.now() - started, 'it waited for the image').toBeGreaterThan(200);
      } finally {
        await source.close();
      }
    } finally {
      disarmAllFailpoints();
      await primary.stop();
    }
  });
});
