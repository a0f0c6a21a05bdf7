/** BlobWriter against a real blob directory: save, verify, order per id, and the durable cursor. */
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type BlobAckOutcome, MessageType, crc32 } from '@walwire/protocol';
import { silentLogger } from '@walwire/runtime';
import { BlobWriter, DurabilityTracker } from '@walwire/replica';
import { makeTempDir, useHarness } from '../../../test/harness/index.js';

useHarness();

const G = 'a'.repeat(32);
/** Polls `done` for up to 2 s (the temp file's unlink runs after the failing write settles). */
async function until(done: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !done(); i++) await new Promise((r) => setTimeout(r, 10));
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

function setup(applied = 0, stallTimeoutMs = 60_000) {
  const dir = join(makeTempDir(), 'blobs');
  const tracker = new DurabilityTracker(applied, applied);
  const writer = new BlobWriter({ ns: 'app', dir, durability: tracker, logger: silentLogger(), stallTimeoutMs, generation: () => G });
  const acks: string[] = [];
  const ack = (id: string) => (outcome: BlobAckOutcome, bytes: number) => acks.push(`${id} ${outcome} ${bytes}`);
  const released = () => new Promise<void>((resolve) => writer.once('release', () => resolve()));
  const failed = () => new Promise<string>((resolve) => writer.once('gap', ({ error }) => resolve(error.code)));
  /** Streams `body` as `id` at `seq` in chunks; returns after END is handed over. */
  const stream = (seq: number, id: string, body: Buffer, chunk = 1000, announced = sha(body)): void => {
    writer.begin({ type: MessageType.BLOB_BEGIN, ns: 'app', generation: G, seq, blobId: id, size: body.length, sha256: announced }, false, ack(id));
    for (let at = 0; at < body.length; at += chunk) {
      const data = body.subarray(at, at + chunk);
      writer.chunk({ type: MessageType.BLOB_CHUNK, ns: 'app', generation: G, seq, blobId: id, offset: at, data, crc: crc32(data) });
    }
    writer.end({ type: MessageType.BLOB_END, ns: 'app', generation: G, seq, blobId: id });
  };
  return { dir, tracker, writer, acks, stream, released, failed, ack };
}

describe('BlobWriter', () => {
  it('saves a streamed blob byte-exact under <id>~<sha256> and releases its event', async () => {
    const { dir, tracker, writer, acks, stream, released } = setup(4);
    const body = randomBytes(4500);
    tracker.startStream();
    const done = released();
    stream(5, 'img', body);
    expect(tracker.noteApplied(6)).toBe(4);
    await done;
    expect(tracker.noteApplied(6)).toBe(6);
    expect(readFileSync(join(dir, `img~${sha(body)}`)).equals(body)).toBe(true);
    expect(acks.at(-1)).toBe(`img saved ${body.length}`);
    expect(writer.status.saved).toBe(1);
  });

  it('a checksum mismatch latches a gap, leaves no file, and acknowledges failed', async () => {
    const { dir, tracker, stream, failed, acks } = setup(4);
    tracker.startStream();
    const gap = failed();
    stream(5, 'bad', randomBytes(3000), 1000, 'f'.repeat(64));
    expect(await gap).toBe('WALWIRE_ERR_BLOB_CHECKSUM');
    expect(tracker.noteApplied(9)).toBe(4);
    expect(tracker.gapSeq).toBe(5);
    await until(() => readdirSync(dir).length === 0);
    expect(readdirSync(dir)).toEqual([]);
    expect(acks.at(-1)).toMatch(/^bad failed /);
  });

  it('a chunk failing its CRC fails the save', async () => {
    const { writer, tracker, failed, ack } = setup(0);
    tracker.startStream();
    const gap = failed();
    const data = randomBytes(100);
    writer.begin({ type: MessageType.BLOB_BEGIN, ns: 'app', generation: G, seq: 1, blobId: 'x', size: 100, sha256: sha(data) }, false, ack('x'));
    writer.chunk({ type: MessageType.BLOB_CHUNK, ns: 'app', generation: G, seq: 1, blobId: 'x', offset: 0, data, crc: (crc32(data) ^ 1) >>> 0 });
    expect(await gap).toBe('WALWIRE_ERR_BLOB_CHECKSUM');
  });

  it('a blob already held with that content is acknowledged present without a hold', async () => {
    const { writer, tracker, stream, released, acks, ack } = setup(0);
    tracker.startStream();
    const body = randomBytes(2000);
    const done = released();
    stream(1, 'same', body);
    await done;
    writer.begin({ type: MessageType.BLOB_BEGIN, ns: 'app', generation: G, seq: 2, blobId: 'same', size: body.length, sha256: sha(body) }, false, ack('same'));
    expect(acks.at(-1)).toBe(`same present ${body.length}`);
    expect(tracker.noteApplied(2)).toBe(2);
  });

  it('a delete announced after a put of the same id waits for that put (no resurrection)', async () => {
    const { dir, writer, tracker, ack } = setup(0);
    tracker.startStream();
    const body = randomBytes(5000);
    writer.begin({ type: MessageType.BLOB_BEGIN, ns: 'app', generation: G, seq: 1, blobId: 'a', size: body.length, sha256: sha(body) }, false, ack('a'));
    writer.delete({ type: MessageType.BLOB_DELETE, ns: 'app', generation: G, seq: 2, blobId: 'a' });
    await new Promise((r) => setTimeout(r, 30));
    writer.chunk({ type: MessageType.BLOB_CHUNK, ns: 'app', generation: G, seq: 1, blobId: 'a', offset: 0, data: body, crc: crc32(body) });
    writer.end({ type: MessageType.BLOB_END, ns: 'app', generation: G, seq: 1, blobId: 'a' });
    for (let i = 0; i < 100 && tracker.noteApplied(2) < 2; i++) await new Promise((r) => setTimeout(r, 10));
    expect(tracker.durableSeq).toBe(2);
    expect(readdirSync(dir)).toEqual([]);
    expect(writer.status.deleted).toBe(1);
  });

  it('BLOB_GONE skips the blob and releases its event', async () => {
    const { writer, tracker, released, ack } = setup(0);
    tracker.startStream();
    writer.begin({ type: MessageType.BLOB_BEGIN, ns: 'app', generation: G, seq: 1, blobId: 'gone', size: 10, sha256: 'e'.repeat(64) }, false, ack('gone'));
    const done = released();
    writer.gone({ type: MessageType.BLOB_GONE, ns: 'app', generation: G, seq: 1, blobId: 'gone', reason: 'deleted' });
    await done;
    expect(tracker.noteApplied(1)).toBe(1);
    expect(writer.status.gone).toBe(1);
  });

  it('a dropped connection abandons unfinished blobs: temp files deleted, the hold stays', async () => {
    const { dir, writer, tracker, ack } = setup(0);
    tracker.startStream();
    const data = randomBytes(1000);
    writer.begin({ type: MessageType.BLOB_BEGIN, ns: 'app', generation: G, seq: 1, blobId: 'half', size: 5000, sha256: 'e'.repeat(64) }, false, ack('half'));
    writer.chunk({ type: MessageType.BLOB_CHUNK, ns: 'app', generation: G, seq: 1, blobId: 'half', offset: 0, data, crc: crc32(data) });
    await until(() => readdirSync(dir).length === 1);
    expect(readdirSync(dir).length).toBe(1);
    writer.abortAll();
    await until(() => readdirSync(dir).length === 0);
    expect(readdirSync(dir)).toEqual([]);
    expect(tracker.noteApplied(3)).toBe(0);
  });

  it('a blob that stops making progress fails after stallTimeoutMs and latches a gap', async () => {
    const { writer, tracker, failed, ack, acks } = setup(0, 50);
    tracker.startStream();
    const gap = failed();
    const data = randomBytes(1000);
    writer.begin({ type: MessageType.BLOB_BEGIN, ns: 'app', generation: G, seq: 1, blobId: 'slow', size: 5000, sha256: 'e'.repeat(64) }, false, ack('slow'));
    writer.chunk({ type: MessageType.BLOB_CHUNK, ns: 'app', generation: G, seq: 1, blobId: 'slow', offset: 0, data, crc: crc32(data) });
    writer.checkStalls(Date.now()); // not stalled yet
    expect(writer.status.failures).toBe(0);
    writer.checkStalls(Date.now() + 1000);
    expect(await gap).toBe('WALWIRE_ERR_BLOB_SAVE_FAILED');
    expect(tracker.gapSeq).toBe(1);
    expect(acks.at(-1)).toMatch(/^slow failed /);
  });
});
