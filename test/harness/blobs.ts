/**
 * Blob helpers for cross-process tests: a PUT through the primary's HTTP
 * API, and a blob directory read back and checked.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { type DaemonProcess, TEST_TOKEN } from './cluster.js';

/** PUT /v1/namespaces/:ns/blobs/:id; resolves with the event's seq and the content's sha256, throws on any other status than 200/201. */
export async function putBlob(primary: DaemonProcess, ns: string, id: string, body: Uint8Array): Promise<{ seq: number; sha256: string }> {
  const res = await fetch(`http://127.0.0.1:${primary.port}/v1/namespaces/${ns}/blobs/${id}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': 'application/octet-stream' },
    body,
  });
  const json = (await res.json()) as { seq: number; sha256: string };
  if (res.status !== 201 && res.status !== 200) throw new Error(`PUT ${id}: HTTP ${res.status} ${JSON.stringify(json)}`);
  return json;
}

/** PUTs `count` blobs of random content named `pre-0`, `pre-1`, …, blob i of `size(i)` bytes; resolves with id → content. */
export async function putRandomBlobs(primary: DaemonProcess, ns: string, count: number, size: (i: number) => number): Promise<Map<string, Buffer>> {
  const blobs = new Map<string, Buffer>();
  for (let i = 0; i < count; i++) {
    const body = randomBytes(size(i));
    blobs.set(`pre-${i}`, body);
    await putBlob(primary, ns, `pre-${i}`, body);
  }
  return blobs;
}

/**
 * The blob directory as id → content. Every entry must be a committed blob
 * (`<id>~<sha256>` whose content hashes to its name): a temp file left
 * behind, or a partial file under a final name, fails here.
 */
export function blobFiles(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir)) {
    const m = /^(.+)~([0-9a-f]{64})$/.exec(name);
    expect(m, `${name} in ${dir} is not a committed blob (temp file left?)`).not.toBeNull();
    const data = readFileSync(join(dir, name));
    expect(createHash('sha256').update(data).digest('hex'), `content of ${name}`).toBe(m![2]);
    out.set(m![1]!, data);
  }
  return out;
}
