/**
 * The library API the streaming layer builds on, in-process: start/stop,
 * namespace list, head, the record event, lazy reads, blob events,
 * retention, and errors with stable codes. Writes come from the sqlite3 CLI
 * (another process).
 */
import { describe, expect, it, afterEach } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Primary, type RecordEvent, type GenerationEvent, type NamespaceErrorEvent } from '@walwire/primary';
import { GENERATION_PATTERN, hasCode } from '@walwire/protocol';
import type { Logger } from '@walwire/runtime';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function cli(db: string, sql: string): void {
  execFileSync('/usr/bin/sqlite3', ['-bail', db], { input: `.timeout 10000\n${sql}`, encoding: 'utf8' });
}

async function until<T>(fn: () => T | undefined, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * A silent logger that calls `hook` with the namespace each time a child
 * logger is made for one: every open of a namespace starts with that, so a
 * test can act at the exact moment an open (or a retry) begins.
 */
function onNamespaceOpen(hook: (ns: string) => void): Logger {
  const logger = {
    level: 'info',
    trace() {},
    debug() {},
    info() {},
    warn() {},
    error() {},
    fatal() {},
    child(bindings: { ns?: string }) {
      if (bindings?.ns !== undefined) hook(bindings.ns);
      return logger;
    },
  };
  return logger as unknown as Logger;
}

describe('Primary library API', () => {
  it('serves head, record events, lazy reads, blob events and retention', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'walwire-api-'));
    dirs.push(dir);
    const db = join(dir, 'app.db');
    cli(db, 'PRAGMA journal_mode=WAL; CREATE TABLE t(x);');
    const primary = new Primary({ dataDir: join(dir, 'data'), namespaces: { app: { path: db }, fresh: { path: join(dir, 'sub', 'fresh.db') } } });
    const records: RecordEvent[] = [];
    const generations: GenerationEvent[] = [];
    primary.on('record', (e) => records.push(e));
    primary.on('generation', (e) => generations.push(e));
    await primary.start();
    expect(primary.namespaces()).toEqual(['app', 'fresh']);
    expect(generations.map((g) => g.ns).sort()).toEqual(['app', 'fresh']);
    const head0 = primary.head('app');
    expect(head0.seq).toBe(0);
    expect(head0.generation).toMatch(GENERATION_PATTERN);
    expect(head0.checksum).toBe(generations.find((g) => g.ns === 'app')!.checksum);

    cli(db, "INSERT INTO t VALUES ('one');");
    const first = await until(() => records.find((r) => r.ns === 'app'));
    expect(first.record.seq).toBe(1);
    expect(first.record.kind).toBe('txn');
    expect(primary.head('app')).toMatchObject({ seq: 1, generation: head0.generation });
    if (first.record.kind !== 'txn') throw new Error('kind');
    expect(primary.head('app').checksum).toBe(first.record.txn.checksum);

    const blob = await primary.appendBlobPut('app', { blobId: 'b-1', size: 5, sha256: 'ab'.repeat(32) });
    expect(blob.seq).toBe(2);
    await until(() => records.find((r) => r.record.seq === 2));
    // The position's checksum stays the database's across blob events.
    expect(primary.head('app')).toMatchObject({ seq: 2, checksum: first.record.txn.checksum });
    const del = await primary.appendBlobDelete('app', 'b-1');
    expect(del.seq).toBe(3);

    const read = [];
    for await (const r of primary.read('app', 2)) read.push(r);
    expect(read.map((r) => [r.seq, r.kind])).toEqual([
      [2, 'blob-put'],
      [3, 'blob-delete'],
    ]);
    expect(await primary.truncateLogBefore('app', 3)).toBe(0); // one segment: always kept

    const status = primary.status();
    expect(status.namespaces.map((n) => [n.name, n.state])).toEqual([
      ['app', 'running'],
      ['fresh', 'running'],
    ]);
    expect(() => primary.head('nope')).toThrow(expect.objectContaining({ code: 'WALWIRE_ERR_UNKNOWN_NAMESPACE' }));
    await primary.stop();
    expect(() => primary.head('app')).toThrow(expect.objectContaining({ code: 'WALWIRE_ERR_CLOSED' }));

    // Restart: same generation, head preserved.
    const again = await Primary.start({ dataDir: join(dir, 'data'), namespaces: { app: { path: db } } });
    expect(again.head('app')).toMatchObject({ generation: head0.generation, seq: 3 });
    await again.stop();
  });

  it('gives back the memory it reuses under load after idleReleaseMs without an append, and takes it again at the next commit', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'walwire-api-'));
    dirs.push(dir);
    const db = join(dir, 'app.db');
    cli(db, 'PRAGMA journal_mode=WAL; CREATE TABLE t(x);');
    const primary = new Primary({ dataDir: join(dir, 'data'), namespaces: { app: { path: db } }, idleReleaseMs: 1500 });
    const records: RecordEvent[] = [];
    primary.on('record', (e) => records.push(e));
    await primary.start();
    const bufferBytes = (): number => primary.status().namespaces[0]!.bufferBytes;
    const burst = 'INSERT INTO t SELECT randomblob(3000) FROM (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50) SELECT i FROM n);';
    cli(db, burst);
    await until(() => records.find((r) => r.record.kind === 'txn'));
    // Read buffer, record arena and log cache, held while the namespace is busy.
    expect(bufferBytes()).toBeGreaterThan(4 * 1024 * 1024);
    const idleSince = Date.now();
    await until(() => (bufferBytes() === 0 ? true : undefined), 10_000);
    expect(Date.now() - idleSince, 'not released before the namespace was idle').toBeGreaterThanOrEqual(1000);
    cli(db, burst);
    await until(() => (records.filter((r) => r.record.kind === 'txn').length === 2 ? true : undefined));
    expect(bufferBytes()).toBeGreaterThan(0);
    // The records the released cache held are read from the log's files.
    const read = [];
    for await (const r of primary.read('app', 1)) read.push(r.seq);
    expect(read).toEqual(records.map((r) => r.record.seq));
    await primary.stop();
  });

  it('a namespace that cannot open is reported, answers WALWIRE_ERR_NAMESPACE_UNAVAILABLE and is retried; the others start', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'walwire-api-'));
    dirs.push(dir);
    const db = join(dir, 'ok.db');
    const primary = new Primary({
      dataDir: join(dir, 'data'),
      namespaces: { ok: { path: db }, missing: { path: join(dir, 'missing.db'), create: false } },
      namespaceRetryMs: 20,
    });
    const errors: NamespaceErrorEvent[] = [];
    primary.on('namespace-error', (e) => errors.push(e));
    await primary.start();
    // 'missing' failed (perhaps retried already, every 20 ms); 'ok' did not.
    expect(errors.length).toBeGreaterThanOrEqual(1);
    expect(errors.every((e) => e.ns === 'missing')).toBe(true);
    expect(primary.status().namespaces.find((n) => n.name === 'missing')!.state).toBe('failed');
    expect(primary.head('ok').seq).toBe(0);
    let err: unknown;
    try {
      primary.head('missing');
    } catch (e) {
      err = e;
    }
    expect(hasCode(err, 'WALWIRE_ERR_NAMESPACE_UNAVAILABLE')).toBe(true);
    expect(() => primary.head('nope')).toThrow(expect.objectContaining({ code: 'WALWIRE_ERR_UNKNOWN_NAMESPACE' }));
    // Retried (20, 40 ms …) until the database exists; then it runs.
    await new Promise((r) => setTimeout(r, 100));
    expect(errors.length).toBeGreaterThanOrEqual(2);
    const started = new Promise<number>((resolve) => primary.once('namespace-started', (e) => resolve(e.failedAttempts)));
    const created = new Database(join(dir, 'missing.db'));
    created.pragma('journal_mode = WAL');
    created.exec('CREATE TABLE t(x)');
    created.close();
    expect(await started).toBeGreaterThanOrEqual(2);
    expect(primary.head('missing').seq).toBeGreaterThanOrEqual(0);
    expect(primary.status().namespaces.find((n) => n.name === 'missing')!.state).toBe('running');
    await primary.stop();
  });

  it('a namespace removed while a retry is opening it is gone: unknown, not unavailable (regression: the failed retry recorded it again, and it answered 503 for good)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'walwire-api-'));
    dirs.push(dir);
    const ok = join(dir, 'ok.db');
    const dataDir = join(dir, 'data');
    mkdirSync(dataDir, { recursive: true });
    writeFileSync(join(dataDir, 'bad'), 'a file where the namespace directory should be'); // every open of 'bad' fails
    let primary: Primary | undefined;
    let removal: Promise<void> | undefined;
    let opens = 0;
    // The second open of 'bad' is the first retry.
    const logger = onNamespaceOpen((ns) => {
      if (ns === 'bad' && ++opens === 2) removal = primary!.removeNamespace('bad');
    });
    primary = new Primary({ dataDir, namespaces: { ok: { path: ok }, bad: { path: join(dir, 'bad.db') } }, namespaceRetryMs: 20, logger });
    await primary.start(); // the first retry may already have run (and the removal with it)
    for (let i = 0; i < 200 && removal === undefined; i++) await new Promise((r) => setTimeout(r, 10));
    await removal;
    expect(primary.namespaces()).toEqual(['ok']);
    await new Promise((r) => setTimeout(r, 100)); // no later retry brings it back
    expect(() => primary!.head('bad')).toThrow(expect.objectContaining({ code: 'WALWIRE_ERR_UNKNOWN_NAMESPACE' }));
    expect(opens).toBe(2);
    await primary.stop();
  });

  it('a namespace being created when the primary stops is not remembered (regression: the create saved it to namespaces.json after the stop)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'walwire-api-'));
    dirs.push(dir);
    const dataDir = join(dir, 'data');
    let primary: Primary | undefined;
    let stopping: Promise<void> | undefined;
    // Stop while 'late' opens.
    const logger = onNamespaceOpen((ns) => {
      if (ns === 'late' && stopping === undefined) stopping = primary!.stop();
    });
    primary = new Primary({ dataDir, namespaces: { ok: { path: join(dir, 'ok.db') } }, logger });
    await primary.start();
    await expect(primary.addNamespace('late', { path: join(dir, 'late.db') })).rejects.toMatchObject({ code: 'WALWIRE_ERR_CLOSED' });
    await stopping;
    const remembered = join(dataDir, 'namespaces.json');
    expect(existsSync(remembered) ? readFileSync(remembered, 'utf8') : '').not.toContain('late');
  });

  it('rejects invalid options with the option name and value', () => {
    expect(() => new Primary({ dataDir: '/tmp/x', namespaces: { a: { path: '/tmp/a.db' } }, pollIntervalMs: -1 })).toThrow(/pollIntervalMs.*received -1/);
  });
});
