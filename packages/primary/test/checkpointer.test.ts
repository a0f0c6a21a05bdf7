import { describe, expect, it } from 'vitest';
import { Checkpointer } from '@walwire/primary';
import { silentLogger } from '@walwire/runtime';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function make(concurrency = 2): { cp: Checkpointer; degraded: [string, boolean][] } {
  const degraded: [string, boolean][] = [];
  const cp = new Checkpointer({
    concurrency,
    busyTimeoutMs: 10,
    backoffMs: 10,
    backoffMaxMs: 40,
    degradedAfterErrors: 2,
    logger: silentLogger(),
    onDegraded: (ns, d) => degraded.push([ns, d]),
  });
  return { cp, degraded };
}

describe('Checkpointer', () => {
  it('bounds concurrency across namespaces and coalesces requests', async () => {
    const { cp } = make(2);
    let running = 0;
    let peak = 0;
    const runs = new Map<string, number>();
    for (const ns of ['a', 'b', 'c', 'd']) {
      cp.register(ns, async () => {
        running++;
        peak = Math.max(peak, running);
        await sleep(30);
        runs.set(ns, (runs.get(ns) ?? 0) + 1);
        running--;
      });
    }
    for (const ns of ['a', 'b', 'c', 'd']) for (let i = 0; i < 5; i++) cp.schedule(ns);
    await sleep(200);
    expect(peak).toBe(2);
    // Five requests each: one run, plus at most one more for requests that
    // arrived while it ran.
    expect([...runs.values()].every((n) => n >= 1 && n <= 2)).toBe(true);
    await cp.close();
  });

  it('backs off after errors, marks the namespace degraded, and recovers', async () => {
    const { cp, degraded } = make();
    let fail = true;
    let calls = 0;
    cp.register('x', async () => {
      calls++;
      if (fail) throw Object.assign(new Error('disk on fire'), { code: 'SQLITE_IOERR' });
    });
    cp.schedule('x');
    for (let i = 0; i < 100 && !cp.status('x')!.degraded; i++) await sleep(5);
    const s = cp.status('x')!;
    expect(s.degraded).toBe(true);
    expect(s.consecutiveErrors).toBeGreaterThanOrEqual(2);
    expect(s.lastError).toBe('SQLITE_IOERR: disk on fire');
    expect(degraded).toEqual([['x', true]]);
    fail = false;
    for (let i = 0; i < 100 && cp.status('x')!.degraded; i++) await sleep(5);
    expect(cp.status('x')).toMatchObject({ degraded: false, consecutiveErrors: 0, lastError: null, completed: 1 });
    expect(degraded).toEqual([
      ['x', true],
      ['x', false],
    ]);
    expect(calls).toBeGreaterThanOrEqual(3);
    await cp.close();
  });

  it('close() waits for a running checkpoint and refuses new ones', async () => {
    const { cp } = make();
    let finished = false;
    let started = 0;
    cp.register('x', async () => {
      started++;
      await sleep(100);
      finished = true;
    });
    cp.schedule('x');
    await sleep(10);
    await cp.close();
    expect(finished).toBe(true);
    cp.schedule('x');
    await sleep(20);
    expect(started).toBe(1);
  });

  it('runs SQLite checkpoints in a worker thread', async () => {
    const { cp } = make();
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { execFileSync } = await import('node:child_process');
    const dir = mkdtempSync(join(tmpdir(), 'walwire-ckpt-'));
    const db = join(dir, 'x.db');
    execFileSync('/usr/bin/sqlite3', [db], { input: 'PRAGMA journal_mode=WAL; CREATE TABLE t(x);' });
    let result: unknown;
    cp.register('x', async (run) => {
      result = await run(db, 'PASSIVE');
    });
    cp.schedule('x');
    for (let i = 0; i < 200 && result === undefined; i++) await sleep(5);
    expect(result).toMatchObject({ busy: 0 });
    await cp.close();
    rmSync(dir, { recursive: true, force: true });
  });
});
