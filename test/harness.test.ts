/** The test harness and failpoints, checked against real processes and files. */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ChaosProxy, diffImages, killAllChildren, spawnCommand, spawnFixture, useHarness } from './harness/index.js';

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

describe('chaos proxy', () => {
  async function echoServer(): Promise<{ port: number; close: () => Promise<void> }> {
    const { createServer } = await import('node:net');
    const server = createServer((s) => s.pipe(s));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return { port: (server.address() as { port: number }).port, close: () => new Promise((r) => server.close(() => r())) };
  }

  async function roundTrip(port: number, payload: Buffer): Promise<Buffer> {
    const { connect } = await import('node:net');
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let total = 0;
    return new Promise((resolve, reject) => {
      socket.on('data', (d: Buffer) => {
        chunks.push(d);
        total += d.length;
        if (total >= payload.length) {
          socket.destroy();
          resolve(Buffer.concat(chunks));
        }
      });
      socket.on('error', reject);
      socket.write(payload);
    });
  }

  it('forwards bytes unchanged, flips exactly the armed byte, and throttles', async () => {
    const echo = await echoServer();
    const proxy = await ChaosProxy.start(echo.port);
    try {
      const payload = randomBytes(64 * 1024);
      expect((await roundTrip(proxy.port, payload)).equals(payload)).toBe(true);
      proxy.flipByte('down', 40_000, 0x80);
      const flipped = await roundTrip(proxy.port, payload);
      const diff = [...flipped.keys()].filter((i) => flipped[i] !== payload[i]);
      expect(diff).toEqual([40_000]);
      expect(proxy.stats.flips).toBe(1);
      proxy.throttle(256 * 1024);
      const t = performance.now();
      await roundTrip(proxy.port, payload);
      expect(performance.now() - t).toBeGreaterThan(150); // 64 KiB each way at 256 KiB/s
    } finally {
      await proxy.close();
      await echo.close();
    }
  });

  it('cut closes both sides of every connection', async () => {
    const echo = await echoServer();
    const proxy = await ChaosProxy.start(echo.port);
    const { connect } = await import('node:net');
    const socket = connect(proxy.port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    await new Promise((r) => setTimeout(r, 50));
    const closed = new Promise((r) => socket.once('close', r));
    proxy.cut();
    await closed;
    expect(proxy.stats.cuts).toBe(1);
    await proxy.close();
    await echo.close();
  });
});
