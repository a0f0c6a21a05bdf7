/**
 * BlobDirectory and BlobTemp on real files: content through the background
 * syncs, and a failed sync at commit leaving nothing behind.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BLOB_BACKGROUND_SYNC_BYTES, BlobDirectory } from '@walwire/runtime';

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
    const data = randomBytes(2 * BLOB_BACKGROUND_SYNC_BYTES + chunk + 123);
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
