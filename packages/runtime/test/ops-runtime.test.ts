import Database from 'better-sqlite3';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DaemonSentinel, checkIntegrity, parseIntegrityBody } from '@walwire/runtime';

const dirs: string[] = [];
const tmp = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'walwire-ops-rt-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('DaemonSentinel', () => {
  it('first start is clean; a sentinel left behind is unclean; release removes it; a torn one is unreadable', async () => {
    const dir = tmp();
    const first = await DaemonSentinel.acquire(dir, 'test');
    expect(first.unclean).toBe(false);
    expect(existsSync(join(dir, 'daemon.running'))).toBe(true);
    const second = await DaemonSentinel.acquire(dir, 'test');
    expect(second.unclean).toBe(true);
    expect(second.previous).toMatchObject({ role: 'test', pid: process.pid });
    await second.release();
    await second.release();
    expect(existsSync(join(dir, 'daemon.running'))).toBe(false);
    expect((await DaemonSentinel.acquire(dir, 'test')).unclean).toBe(false);
    writeFileSync(join(dir, 'daemon.running'), '{"pid":');
    expect((await DaemonSentinel.acquire(dir, 'test')).previous).toBe('unreadable');
  });
});

describe('checkIntegrity', () => {
  it('ok for a healthy database (quick and full), ok:false for garbage or a missing file, never a throw', async () => {
    const dir = tmp();
    const path = join(dir, 'a.db');
    const db = new Database(path);
    db.exec('CREATE TABLE t(x); INSERT INTO t VALUES (1), (2);');
    db.close();
    expect(await checkIntegrity(path)).toEqual({ ok: true, message: 'ok', check: 'quick' });
    expect(await checkIntegrity(path, { full: true })).toEqual({ ok: true, message: 'ok', check: 'full' });
    const junk = join(dir, 'junk.db');
    writeFileSync(junk, Buffer.alloc(8192, 7));
    const bad = await checkIntegrity(junk);
    expect(bad.ok).toBe(false);
    expect(bad.message).toMatch(/SQLITE_NOTADB|not a database/);
    expect((await checkIntegrity(join(dir, 'missing.db'))).ok).toBe(false);
  });

  it('parseIntegrityBody accepts {} and {full: boolean} only', () => {
    expect(parseIntegrityBody({})).toEqual({ full: false });
    expect(parseIntegrityBody({ full: true })).toEqual({ full: true });
    expect(() => parseIntegrityBody({ full: 1 })).toThrow(/full must be a boolean/);
  });
});
