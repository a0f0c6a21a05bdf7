/** The test harness and failpoints, checked against real processes and files. */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { diffImages, killAllChildren, spawnCommand, spawnFixture, useHarness } from './harness/index.js';

useHarness();

describe('failpoints in a real process', () => {
  it('kill is SIGKILL at that instruction; nothing after it runs', async () => {
    const child = spawnFixture('failpoint-probe', [], { env: { WALWIRE_FAILPOINTS: 'probe.point=kill' } });
    const status = await child.exited;
    expect(status.signal).toBe('SIGKILL');
    expect(child.lines).toEqual(['before']);
  });

  it('kill inside a worker thread takes down the whole process', async () => {
    const child = spawnFixture('failpoint-probe', ['worker'], { env: { WALWIRE_FAILPOINTS: 'probe.point=kill' } });
    const status = await child.exited;
    expect(status.signal).toBe('SIGKILL');
    expect(child.lines).not.toContain('after');
  });

  it('throw surfaces WALWIRE_ERR_FAILPOINT; unarmed is inert', async () => {
    const armed = spawnFixture('failpoint-probe', [], { env: { WALWIRE_FAILPOINTS: 'probe.point=throw' } });
    await armed.succeeded();
    expect(armed.lines).toEqual(['before', 'threw WALWIRE_ERR_FAILPOINT']);
    const inert = spawnFixture('failpoint-probe', [], { env: { WALWIRE_FAILPOINTS: '' } });
    await inert.succeeded();
    expect(inert.lines).toEqual(['before', 'after']);
  });
});

describe('harness', () => {
  it('diffImages ignores only the replica-volatile page-1 bytes', () => {
    const page = 512;
    const a = Buffer.alloc(page * 3);
    a.write('SQLite format 3\0', 0, 'latin1');
    a.writeUInt16BE(page, 16);
    randomBytes(page * 2).copy(a, page);
    for (const at of [18, 19, 24, 27, 92, 95]) {
      const b = Buffer.from(a);
      b[at]! ^= 0xff;
      expect(diffImages(a, b).pages).toEqual([]);
    }
    for (const [at, pgno] of [[17, 1], [28, 1], [40, 1], [96, 1], [page + 7, 2], [3 * page - 1, 3]] as const) {
      const b = Buffer.from(a);
      b[at]! ^= 0xff;
      expect(diffImages(a, b).pages).toEqual([pgno]);
    }
    expect(diffImages(a, a.subarray(0, 2 * page)).pages).toEqual([3]);
  });

  it('killAllChildren leaves no process running', async () => {
    const sleeper = spawnCommand('sleep', ['30']);
    await killAllChildren();
    const status = await sleeper.exited;
    expect(status.signal).toBe('SIGKILL');
  });
});
