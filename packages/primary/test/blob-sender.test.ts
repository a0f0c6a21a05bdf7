/**
 * BlobSender against real blob files and an in-memory frame sink (the
 * socket is the boundary here; the cross-process tests cover it): slots,
 * credit, and which BLOB_ACKs end a job.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BlobAckOutcome, DEFAULT_PROTOCOL_LIMITS, type Message, MessageType, decodeMessage } from '@walwire/protocol';
import { BlobSender, type BlobJob } from '@walwire/primary';
import { silentLogger } from '@walwire/runtime';

const GEN = 'e'.repeat(32);
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function setup(count: number, maxBlobsInFlight: number) {
  const dir = mkdtempSync(join(tmpdir(), 'walwire-blob-sender-'));
  dirs.push(dir);
  const jobs: BlobJob[] = [];
  for (let i = 1; i <= count; i++) {
    const data = randomBytes(3000 + i);
    const sha256 = createHash('sha256').update(data).digest('hex');
    writeFileSync(join(dir, `b${i}`), data);
    jobs.push({ seq: i, blobId: `b${i}`, size: data.length, sha256 });
  }
  const messages: Message[] = [];
  const sender = new BlobSender({
    ns: 'app',
    generation: GEN,
    source: { open: (id) => open(join(dir, id), 'r'), list: () => [] },
    sink: { closed: false, send: (frame, done) => (messages.push(decodeMessage(frame)), queueMicrotask(() => done())) },
    limits: DEFAULT_PROTOCOL_LIMITS,
    chunkBytes: 1024,
    maxBlobsInFlight,
    blobWindowBytes: 1 << 20,
    logger: silentLogger(),
  });
  const ack = (job: BlobJob, outcome: BlobAckOutcome, bytes = job.size): void =>
    sender.ack({ type: MessageType.BLOB_ACK, ns: 'app', generation: GEN, seq: job.seq, blobId: job.blobId, bytes, outcome });
  const ended = (job: BlobJob): boolean => messages.some((m) => m.type === MessageType.BLOB_END && m.blobId === job.blobId);
  const chunks = (job: BlobJob): number => messages.filter((m) => m.type === MessageType.BLOB_CHUNK && m.blobId === job.blobId).length;
  return { sender, jobs, ack, ended, chunks };
}

const until = async (cond: () => boolean): Promise<void> => {
  for (let i = 0; i < 1000 && !cond(); i++) await new Promise((r) => setTimeout(r, 2));
  expect(cond()).toBe(true);
};

const settled = async (p: Promise<void>): Promise<boolean> => {
  let done = false;
  void p.then(() => (done = true));
  for (let i = 0; i < 50 && !done; i++) await new Promise((r) => setTimeout(r, 2));
  return done;
};

describe('BlobSender', () => {
  it('streams at most maxBlobsInFlight blobs and starts the next one at a final ACK', async () => {
    const { sender, jobs, ack, ended, chunks } = setup(3, 2);
    for (const j of jobs) sender.enqueue(j, false);
    await until(() => ended(jobs[0]!) && ended(jobs[1]!));
    expect(chunks(jobs[2]!)).toBe(0);
    expect(sender.stats.inFlight).toBe(2);
    ack(jobs[0]!, 'saved');
    await until(() => ended(jobs[2]!));
    ack(jobs[1]!, 'saved');
    ack(jobs[2]!, 'saved');
    expect(await settled(sender.drained())).toBe(true);
  });

  // Regression: in the seed scenario under load, a re-stream announced more
  // blobs than there are slots; the replica answered `present` for queued
  // ones, the ACK was dropped as "late", the jobs streamed later to a replica
  // with no job for them, and their slots waited forever for a final ACK
  // (the durable cursor never reached the head).
  it('a final ACK of a job still queued removes it: it never streams and never takes a slot', async () => {
    const { sender, jobs, ack, ended, chunks } = setup(6, 2);
    for (const j of jobs) sender.enqueue(j, false);
    await until(() => ended(jobs[0]!) && ended(jobs[1]!));
    ack(jobs[2]!, 'present', 0);
    ack(jobs[3]!, 'failed', 0);
    ack(jobs[0]!, 'saved');
    ack(jobs[1]!, 'saved');
    await until(() => ended(jobs[4]!) && ended(jobs[5]!));
    expect(chunks(jobs[2]!)).toBe(0);
    expect(chunks(jobs[3]!)).toBe(0);
    expect(sender.stats.failedAcks).toBe(1);
    ack(jobs[4]!, 'saved');
    ack(jobs[5]!, 'saved');
    expect(await settled(sender.drained())).toBe(true);
    expect(sender.stats).toMatchObject({ queued: 0, inFlight: 0, blobsSent: 4 });
  });

  it('a progress ACK of a queued job changes nothing', async () => {
    const { sender, jobs, ack, ended } = setup(3, 1);
    for (const j of jobs) sender.enqueue(j, false);
    await until(() => ended(jobs[0]!));
    ack(jobs[2]!, 'progress', 0);
    expect(sender.stats.queued).toBe(2);
    ack(jobs[0]!, 'saved');
    await until(() => ended(jobs[1]!));
    ack(jobs[1]!, 'saved');
    await until(() => ended(jobs[2]!));
    ack(jobs[2]!, 'saved');
    expect(await settled(sender.drained())).toBe(true);
  });
});
