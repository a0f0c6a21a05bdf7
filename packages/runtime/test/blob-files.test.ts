/**
 * BlobDirectory and BlobTemp on real files: content through the background
 * syncs, and a failed sync at commit leaving nothing behind; BackgroundSync's
 * one-at-a-time rule and its latched failure (its handle's datasync is
 * wrapped to count calls, or to fail as a disk would: no real disk fails on
 * demand here).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, promises as fsp, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BACKGROUND_SYNC_BYTES, BackgroundSync, BlobDirectory } from '@walwire/runtime';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function blobDir(): BlobDirectory {
  const d = mkdtempSync(join(tmpdir(), 'walwire-blobfiles-'));
  dirs.push(d);
  return new BlobDirectory(d);
}

describe('BlobTemp and BlobDirectory.commit', () => {
  it('a blob written past several background syncs commits byte-exact under its final name, with no temp left', async () => {
    const files = blobDir();
    const temp = await files.createTemp('big');
    const chunk = 1024 * 1024;
    const data = randomBytes(2 * BACKGROUND_SYNC_BYTES + chunk + 123);
    for (let at = 0; at < data.length; at += chunk) await temp.write(data.subarray(at, at + chunk), at);
    const sha256 = createHash('sha256').update(data).digest('hex');
    const info = await files.commit(temp, 'big', sha256, data.length);
    expect(readdirSync(files.dir)).toEqual([`big~${sha256}`]);
    expect(readFileSync(info.path).equals(data)).toBe(true);
    expect(files.has('big', sha256)).toBe(true);
  });

  it('a sync that fails at commit rejects, and leaves neither the temp nor an entry (regression: the handle and temp were leaked)', async () => {
    const files = blobDir();
    const temp = await files.createTemp('doomed');
    await temp.write(Buffer.from('some content'), 0);
    // A descriptor that can no longer sync: the same failure an fdatasync EIO reports.
    await temp.handle.close();
    await expect(files.commit(temp, 'doomed', 'a'.repeat(64), 12)).rejects.toThrow();
    expect(readdirSync(files.dir)).toEqual([]);
    expect(files.get('doomed')).toBeUndefined();
  });
});

describe('BackgroundSync', () => {
  async function handle(): Promise<fsp.FileHandle> {
    const d = mkdtempSync(join(tmpdir(), 'walwire-bgsync-'));
    dirs.push(d);
    return fsp.open(join(d, 'f'), 'w');
  }

  it('runs one fdatasync at a time, every everyBytes written, and none below that', async () => {
    const h = await handle();
    let calls = 0;
    let inFlight = 0;
    let maxInFlight = 0;
    const real = h.datasync.bind(h);
    h.datasync = async () => {
      calls++;
      maxInFlight = Math.max(maxInFlight, ++inFlight);
      try {
        await new Promise((r) => setTimeout(r, 20));
        await real();
      } finally {
        inFlight--;
      }
    };
    const sync = new BackgroundSync(h, 1000);
    sync.wrote(999);
    expect(calls).toBe(0);
    // Due ten times over while the first runs: still one.
    for (let i = 0; i < 10; i++) sync.wrote(1000);
    expect(calls).toBe(1);
    await sync.settled();
    sync.wrote(1000);
    expect(calls).toBe(2);
    await sync.settled();
    expect(maxInFlight).toBe(1);
    await h.close();
  });

  it('a failed fdatasync is latched: settled() rejects with it, and error keeps it after later syncs succeed', async () => {
    const h = await handle();
    const real = h.datasync.bind(h);
    const eio = Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
    h.datasync = async () => {
      throw eio;
    };
    const sync = new BackgroundSync(h, 10);
    sync.wrote(10);
    await expect(sync.settled()).rejects.toBe(eio);
    h.datasync = real;
    sync.wrote(10);
    await expect(sync.settled()).rejects.toBe(eio);
    expect(sync.error).toBe(eio);
    await h.close();
  });
});
