/**
 * Streaming under faults, all real processes and sockets: restarts (kill -9)
 * of either daemon mid-stream, a chaos proxy that cuts, delays, throttles and
 * flips bytes, and bad peers that must get the right close code and error
 * code while a good replica keeps streaming.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { type Message, MessageType, decodeMessage, encodeMessage } from '@walwire/protocol';
import {
  ChaosProxy,
  TEST_TOKEN,
  assertConverged,
  freePort,
  makeTempDir,
  replicationUrl,
  runWriter,
  spawnWriter,
  sqliteChecksum,
  startPrimaryProcess,
  startReplicaProcess,
  useHarness,
  waitForCatchUp,
} from './harness/index.js';

useHarness();

async function cluster(options: { writes?: number } = {}) {
  const dir = makeTempDir();
  const db = join(dir, 'app.db');
  await runWriter({ db }, { mode: 'load', txns: options.writes ?? 50, rowsPerTxn: 10, payloadBytes: 400, ratePerSec: 0 });
  return { dir, db, replicaDb: join(dir, 'r', 'app', 'db.sqlite') };
}

describe('restarts mid-stream', () => {
  it('kill -9 of the primary while a writer runs: the replica reconnects and converges', async () => {
    const { dir, db, replicaDb } = await cluster();
    const port = await freePort();
    const args = ['--port', String(port)];
    let primary = await startPrimaryProcess({ dataDir: join(dir, 'p'), dbs: { app: db }, args });
    const replica = await startReplicaProcess({ dataDir: join(dir, 'r'), url: replicationUrl(port), namespaces: ['app'] });
    const writer = spawnWriter({ db }, { mode: 'load', txns: 600, rowsPerTxn: 3, payloadBytes: 300, ratePerSec: 300 });
    await writer.waitForLine(/^committed 150$/);
    await primary.child.kill9();
    await writer.waitForLine(/^committed 300$/);
    primary = await startPrimaryProcess({ dataDir: join(dir, 'p'), dbs: { app: db }, args: ['--port', String(port)] });
    await writer.succeeded();
    await waitForCatchUp(primary, replica, 'app', db);
    await assertConverged({ primaryDb: db, replicaDb });
    const status = await replica.get('/v1/status');
    expect((status.body['connection'] as { reconnects: number }).reconnects).toBeGreaterThanOrEqual(1);
  });

  it('kill -9 of the replica while a writer runs: it restarts from its durable cursor and converges', async () => {
    const { dir, db, replicaDb } = await cluster();
    const primary = await startPrimaryProcess({ dataDir: join(dir, 'p'), dbs: { app: db } });
    const url = replicationUrl(primary.port);
    let replica = await startReplicaProcess({ dataDir: join(dir, 'r'), url, namespaces: ['app'] });
    const writer = spawnWriter({ db }, { mode: 'load', txns: 600, rowsPerTxn: 3, payloadBytes: 300, ratePerSec: 300 });
    await writer.waitForLine(/^committed 150$/);
    await replica.child.kill9();
    await writer.waitForLine(/^committed 300$/);
    replica = await startReplicaProcess({ dataDir: join(dir, 'r'), url, namespaces: ['app'] });
    await writer.succeeded();
    await waitForCatchUp(primary, replica, 'app', db);
    await assertConverged({ primaryDb: db, replicaDb });
    // It resumed from its cursor: no second bootstrap.
    expect(replica.child.lines.some((l) => l.includes('primary requires a snapshot'))).toBe(false);
  });
});

describe('chaos proxy between replica and primary', () => {
  it('cut mid-transaction, delay, throttle: converges every time', async () => {
    const { dir, db, replicaDb } = await cluster();
    const primary = await startPrimaryProcess({ dataDir: join(dir, 'p'), dbs: { app: db } });
    const proxy = await ChaosProxy.start(primary.port);
    try {
      const replica = await startReplicaProcess({ dataDir: join(dir, 'r'), url: `${proxy.url}/v1/replicate`, namespaces: ['app'] });
      await waitForCatchUp(primary, replica, 'app', db);
      // A large transaction (several MiB, split into parts), cut while it streams.
      proxy.throttle(2 * 1024 * 1024);
      await runWriter({ db }, { mode: 'load', txns: 1, rowsPerTxn: 2000, payloadBytes: 3000, ratePerSec: 0 });
      await new Promise((r) => setTimeout(r, 400));
      // Mid-transaction: the primary sees the replica behind, with the big seq sent and unacknowledged.
      const lag = ((await primary.get('/v1/status')).body['replicas'] as { namespaces: { lagSeqs: number; lagBytes: number; lagMs: number }[] }[])[0]!.namespaces[0]!;
      expect(lag.lagSeqs).toBeGreaterThanOrEqual(1);
      expect(lag.lagBytes).toBeGreaterThan(1_000_000);
      expect(lag.lagMs).toBeGreaterThan(100);
      proxy.cut();
      proxy.throttle(0);
      proxy.delay(20);
      await runWriter({ db }, { mode: 'load', txns: 100, rowsPerTxn: 2, payloadBytes: 200, ratePerSec: 0 });
      proxy.delay(0);
      await waitForCatchUp(primary, replica, 'app', db);
      await assertConverged({ primaryDb: db, replicaDb });
      expect(proxy.stats.cuts).toBe(1);
      expect(proxy.stats.connections).toBeGreaterThanOrEqual(2);
    } finally {
      await proxy.close();
    }
  });

  it('a flipped byte inside a batch is caught by the frame CRC, never applied, and the stream heals', async () => {
    const { dir, db, replicaDb } = await cluster();
    const primary = await startPrimaryProcess({ dataDir: join(dir, 'p'), dbs: { app: db } });
    const proxy = await ChaosProxy.start(primary.port);
    try {
      const replica = await startReplicaProcess({ dataDir: join(dir, 'r'), url: `${proxy.url}/v1/replicate`, namespaces: ['app'] });
      await waitForCatchUp(primary, replica, 'app', db);
      // ~20 KB into the next downstream bytes: inside the payload of a TXN carrying many pages.
      proxy.flipByte('down', 20_000, 0x10);
      await runWriter({ db }, { mode: 'load', txns: 1, rowsPerTxn: 400, payloadBytes: 500, ratePerSec: 0 });
      await runWriter({ db }, { mode: 'load', txns: 30, rowsPerTxn: 5, payloadBytes: 500, ratePerSec: 0 });
      await waitForCatchUp(primary, replica, 'app', db);
      await assertConverged({ primaryDb: db, replicaDb });
      expect(proxy.stats.flips).toBe(1);
      const logs = replica.child.lines.join('\n');
      expect(logs).toContain('WALWIRE_ERR_FRAME_CHECKSUM');
      expect(logs).not.toContain('diverged');
    } finally {
      await proxy.close();
    }
  });
});

interface RawPeer {
  readonly messages: Message[];
  readonly closed: Promise<{ code: number; reason: string }>;
  readonly ws: WebSocket;
}

function rawPeer(port: number, token: string | null = TEST_TOKEN): Promise<RawPeer> {
  const ws = new WebSocket(replicationUrl(port), { headers: token === null ? {} : { authorization: `Bearer ${token}` }, maxPayload: 64 * 1024 * 1024 });
  const messages: Message[] = [];
  ws.on('message', (data: Buffer) => messages.push(decodeMessage(data)));
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ ws, messages, closed }));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode, body })));
    });
    ws.once('error', reject);
  });
}

const hello = (overrides: Partial<Extract<Message, { type: 1 }>> = {}): Message => ({
  type: MessageType.HELLO,
  minVersion: 1,
  maxVersion: 1,
  replicaId: 'raw-peer',
  namespaces: [{ ns: 'app', generation: null, appliedSeq: 0, durableSeq: 0, checksum: null }],
  ...overrides,
});

function errorOf(peer: RawPeer): { code: string; fatal: boolean } | undefined {
  const m = peer.messages.find((x) => x.type === MessageType.ERROR);
  return m?.type === MessageType.ERROR ? { code: m.code, fatal: m.fatal } : undefined;
}

describe('bad peers get the right close code and error code; a good replica keeps streaming', () => {
  it('garbage, text frames, wrong version, unknown namespace, oversized message, wrong or missing token', async () => {
    const { dir, db, replicaDb } = await cluster();
    const primary = await startPrimaryProcess({ dataDir: join(dir, 'p'), dbs: { app: db } });
    const replica = await startReplicaProcess({ dataDir: join(dir, 'r'), url: replicationUrl(primary.port), namespaces: ['app'] });
    await waitForCatchUp(primary, replica, 'app', db);
    const writer = spawnWriter({ db }, { mode: 'load', txns: 400, rowsPerTxn: 2, payloadBytes: 200, ratePerSec: 200 });

    const garbage = await rawPeer(primary.port);
    garbage.ws.send(Buffer.from('definitely not a walwire frame'));
    expect((await garbage.closed).code).toBe(4006);
    expect(errorOf(garbage)).toEqual({ code: 'WALWIRE_ERR_FRAME_CHECKSUM', fatal: true });

    const text = await rawPeer(primary.port);
    text.ws.send('hello?');
    expect((await text.closed).code).toBe(1002);
    expect(errorOf(text)?.code).toBe('WALWIRE_ERR_UNEXPECTED_MESSAGE');

    const beforeHello = await rawPeer(primary.port);
    beforeHello.ws.send(encodeMessage({ type: MessageType.HEARTBEAT, sentAt: 1 }));
    beforeHello.ws.send(encodeMessage({ type: MessageType.ACK, ns: 'app', generation: 'a'.repeat(32), appliedSeq: 1, durableSeq: 1 }));
    expect((await beforeHello.closed).code).toBe(1002);
    expect(errorOf(beforeHello)?.code).toBe('WALWIRE_ERR_UNEXPECTED_MESSAGE');

    const version = await rawPeer(primary.port);
    version.ws.send(encodeMessage(hello({ minVersion: 7, maxVersion: 9 })));
    expect((await version.closed).code).toBe(4001);
    expect(errorOf(version)?.code).toBe('WALWIRE_ERR_UNSUPPORTED_VERSION');

    const unknown = await rawPeer(primary.port);
    unknown.ws.send(encodeMessage(hello({ namespaces: [{ ns: 'nope', generation: null, appliedSeq: 0, durableSeq: 0, checksum: null }] })));
    expect((await unknown.closed).code).toBe(4002);
    expect(errorOf(unknown)?.code).toBe('WALWIRE_ERR_UNKNOWN_NAMESPACE');

    const big = await rawPeer(primary.port);
    big.ws.send(Buffer.alloc(17 * 1024 * 1024));
    expect((await big.closed).code).toBe(1009);

    for (const token of ['wrong-token', null]) {
      const refused = await rawPeer(primary.port, token).then(
        () => undefined,
        (err: { status?: number; body?: string }) => err,
      );
      expect(refused?.status).toBe(401);
      expect(JSON.parse(refused?.body ?? '{}')).toEqual({ code: 'WALWIRE_ERR_UNAUTHORIZED', message: 'missing or wrong bearer token' });
    }

    await writer.succeeded();
    await waitForCatchUp(primary, replica, 'app', db);
    await assertConverged({ primaryDb: db, replicaDb });
    const status = await replica.get('/v1/status');
    expect((status.body['connection'] as { reconnects: number }).reconnects).toBe(0);
  });

  it('an unknown namespace in HELLO gets its own non-fatal error; the replica\'s other namespaces keep streaming', async () => {
    const { dir, db, replicaDb } = await cluster();
    const primary = await startPrimaryProcess({ dataDir: join(dir, 'p'), dbs: { app: db } });
    const replica = await startReplicaProcess({ dataDir: join(dir, 'r'), url: replicationUrl(primary.port), namespaces: ['app', 'ghost'] });
    await runWriter({ db }, { mode: 'load', txns: 20, rowsPerTxn: 2, payloadBytes: 100, ratePerSec: 0 });
    await waitForCatchUp(primary, replica, 'app', db);
    await assertConverged({ primaryDb: db, replicaDb });
    const status = (await replica.get('/v1/status')).body['connection'] as { reconnects: number; lastError: { code: string } | null };
    expect(status.reconnects).toBe(0);
    expect(status.lastError?.code).toBe('WALWIRE_ERR_UNKNOWN_NAMESPACE');
    expect(primary.child.lines.some((l) => l.includes('does not serve') && l.includes('ghost'))).toBe(true);
  });

  it('the HTTP endpoints refuse a wrong token with 401 and reveal nothing', async () => {
    const { dir, db } = await cluster({ writes: 1 });
    const primary = await startPrimaryProcess({ dataDir: join(dir, 'p'), dbs: { app: db } });
    const replica = await startReplicaProcess({ dataDir: join(dir, 'r'), url: replicationUrl(primary.port), namespaces: ['app'] });
    for (const d of [primary, replica]) {
      for (const path of ['/v1/status', '/v1/namespaces/app/head', '/v1/namespaces/app/wait?seq=1']) {
        const res = await d.get(path, 'nope');
        expect(res.status).toBe(401);
        expect(res.body).toEqual({ code: 'WALWIRE_ERR_UNAUTHORIZED', message: 'missing or wrong bearer token' });
      }
    }
    const missing = await replica.get('/v1/namespaces/ghost/wait?seq=1&timeoutMs=10');
    expect(missing.status).toBe(404);
    expect(missing.body['code']).toBe('WALWIRE_ERR_UNKNOWN_NAMESPACE');
    const timeout = await replica.get('/v1/namespaces/app/wait?seq=999999&timeoutMs=50');
    expect(timeout.status).toBe(504);
    expect(timeout.body['code']).toBe('WALWIRE_ERR_TIMEOUT');
    expect(String(timeout.body['message'])).toMatch(/wait for seq 999999 of app timed out after 50 ms \(applied seq \d+/);
  });
});

describe('liveness and transport security', () => {
  it('a silent (stalled) connection is detected by heartbeats on both sides and replaced', async () => {
    const { dir, db, replicaDb } = await cluster();
    const primary = await startPrimaryProcess({ dataDir: join(dir, 'p'), dbs: { app: db }, args: ['--heartbeat-interval-ms', '200', '--heartbeat-timeout-ms', '1000'] });
    const proxy = await ChaosProxy.start(primary.port);
    try {
      const replica = await startReplicaProcess({
        dataDir: join(dir, 'r'),
        url: `${proxy.url}/v1/replicate`,
        namespaces: ['app'],
        args: ['--heartbeat-interval-ms', '200', '--heartbeat-timeout-ms', '1000'],
      });
      await waitForCatchUp(primary, replica, 'app', db);
      proxy.stall(true);
      const stalledAt = Date.now();
      await replica.child.waitForLine(/no message from the primary for \d+ ms/, 5000);
      await primary.child.waitForLine(/no message from replica/, 5000);
      expect(Date.now() - stalledAt).toBeLessThan(4000);
      proxy.stall(false);
      await runWriter({ db }, { mode: 'load', txns: 20, rowsPerTxn: 2, payloadBytes: 100, ratePerSec: 0 });
      await waitForCatchUp(primary, replica, 'app', db);
      await assertConverged({ primaryDb: db, replicaDb });
    } finally {
      await proxy.close();
    }
  });

  it('liveness counts bytes: a large message on a slow link does not trip the heartbeat timeout', async () => {
    const { dir, db, replicaDb } = await cluster();
    const hb = ['--heartbeat-interval-ms', '200', '--heartbeat-timeout-ms', '1000'];
    const primary = await startPrimaryProcess({ dataDir: join(dir, 'p'), dbs: { app: db }, args: hb });
    const proxy = await ChaosProxy.start(primary.port);
    try {
      const replica = await startReplicaProcess({ dataDir: join(dir, 'r'), url: `${proxy.url}/v1/replicate`, namespaces: ['app'], args: hb });
      await waitForCatchUp(primary, replica, 'app', db);
      proxy.throttle(256 * 1024);
      // One seq of ~1 MiB of pages: one message that takes ~4 s to cross the link.
      await runWriter({ db }, { mode: 'load', txns: 1, rowsPerTxn: 250, payloadBytes: 4000, ratePerSec: 0 });
      await waitForCatchUp(primary, replica, 'app', db, 30_000);
      await assertConverged({ primaryDb: db, replicaDb });
      expect(((await replica.get('/v1/status')).body['connection'] as { reconnects: number }).reconnects).toBe(0);
    } finally {
      await proxy.close();
    }
  }, 60_000);

  it('wss: TLS from certificate and key paths; the replica verifies the primary against a CA file', async () => {
    const { dir, db, replicaDb } = await cluster();
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
    const primary = await startPrimaryProcess({ dataDir: join(dir, 'p'), dbs: { app: db }, args: ['--tls-cert', cert, '--tls-key', key] });
    const replica = await startReplicaProcess({ dataDir: join(dir, 'r'), url: `wss://127.0.0.1:${primary.port}/v1/replicate`, namespaces: ['app'], args: ['--tls-ca', cert] });
    const status = await replica.get('/v1/status');
    expect(status.status).toBe(200);
    const head = await fetch(`https://127.0.0.1:${primary.port}/v1/namespaces/app/head`).catch((err: Error) => err);
    expect(head).toBeInstanceOf(Error); // self-signed: a client without the CA refuses it
    await runWriter({ db }, { mode: 'load', txns: 20, rowsPerTxn: 2, payloadBytes: 100, ratePerSec: 0 });
    // The primary's HTTP endpoint is https now; poll the replica until it matches SQLite's checksum.
    const want = await sqliteChecksum(db);
    const deadline = Date.now() + 20_000;
    let position: Record<string, unknown> = {};
    while (Date.now() < deadline) {
      const ns = ((await replica.get('/v1/status')).body['namespaces'] as { ns: string; position: Record<string, unknown> }[]).find((n) => n.ns === 'app');
      position = ns?.position ?? {};
      if (position['checksum'] === want) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(position['checksum']).toBe(want);
    await assertConverged({ primaryDb: db, replicaDb });
  });
});
