/** Options, cursor store and durability tracker. */
import { describe, expect, it } from 'vitest';
import { readdirSync, writeFileSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CursorCorruptError, InvalidOptionError, InvalidTxnError, crc32 } from '@walwire/protocol';

const crcOf = (r: CursorRecord): number => crc32(Buffer.from(JSON.stringify(r)));
import {
  DEFAULT_REPLICA_OPTIONS,
  DurabilityTracker,
  CURSOR_SLOT_BYTES,
  INITIAL_CURSOR,
  type CursorRecord,
  readCursorSync,
  resolveReplicaOptions,
  writeCursorSync,
} from '@walwire/replica';
import { armFailpoint, disarmAllFailpoints } from '@walwire/runtime';
import { makeTempDir, useHarness } from '../../../test/harness/index.js';

useHarness();

describe('resolveReplicaOptions', () => {
  it('fills the documented defaults', () => {
    const o = resolveReplicaOptions({ dataDir: '/tmp/x' });
    expect(o.maxBatchTxns).toBe(DEFAULT_REPLICA_OPTIONS.maxBatchTxns);
    expect(o.lockAttemptMs).toBe(250);
    expect(o.lockSpinMs).toBe(2);
    expect(o.lockWaitWarnMs).toBe(1000);
    expect(o.maxBatchBytes).toBe(64 * 1024 * 1024);
    expect(Object.isFrozen(o)).toBe(true);
  });

  it('names the option and the value received', () => {
    expect(() => resolveReplicaOptions({ dataDir: '/tmp/x', maxBatchTxns: 0 })).toThrow(/option maxBatchTxns must be an integer from 1 to .*received 0/);
    expect(() => resolveReplicaOptions({ dataDir: '/tmp/x', lockAttemptMs: 1.5 })).toThrow(/lockAttemptMs.*received 1.5/);
    expect(() => resolveReplicaOptions({ dataDir: '/tmp/x', lockSpinMs: -1 })).toThrow(/lockSpinMs.*received -1/);
    expect(() => resolveReplicaOptions({ dataDir: '' })).toThrow(InvalidOptionError);
    expect(() => resolveReplicaOptions({ dataDir: 7 as unknown as string })).toThrow(/dataDir.*received 7/);
    expect(() => resolveReplicaOptions({ dataDir: '/tmp/x', verifyReadBytes: 10 })).toThrow(/verifyReadBytes.*received 10/);
  });
});

describe('cursor store', () => {
  const record: CursorRecord = {
    version: 1,
    generation: 'b'.repeat(32),
    appliedSeq: 42,
    checksum: '0123456789abcdef',
    durableSeq: 40,
    pending: { fromSeq: 43, seq: 45, checksum: 'fedcba9876543210', durableSeq: 45 },
    diverged: null,
  };

  it('reads a missing file as the initial cursor', () => {
    expect(readCursorSync(join(makeTempDir(), 'cursor.json'))).toEqual(INITIAL_CURSOR);
  });

  it('round-trips a record and leaves no temp file behind', () => {
    const dir = makeTempDir();
    const path = join(dir, 'cursor.json');
    writeCursorSync(path, record);
    expect(readCursorSync(path)).toEqual(record);
    writeCursorSync(path, { ...record, pending: null, appliedSeq: 45, durableSeq: 45 });
    expect(readCursorSync(path).appliedSeq).toBe(45);
    expect(readdirSync(dir)).toEqual(['cursor.json']);
  });

  it('rejects a record whose CRC does not match', () => {
    const path = join(makeTempDir(), 'cursor.json');
    writeCursorSync(path, record);
    writeFileSync(path, readFileSync(path, 'utf8').replace('"appliedSeq":42', '"appliedSeq":43'));
    expect(() => readCursorSync(path)).toThrow(CursorCorruptError);
    expect(() => readCursorSync(path)).toThrow(/CRC-32/);
  });

  it('writes after the first go in place, alternating between the two slots: same file, no rename', () => {
    const dir = makeTempDir();
    const path = join(dir, 'cursor.json');
    writeCursorSync(path, record);
    const { ino } = statSync(path);
    for (let seq = 43; seq <= 46; seq++) {
      writeCursorSync(path, { ...record, pending: null, appliedSeq: seq, durableSeq: seq });
      expect(readCursorSync(path).appliedSeq).toBe(seq);
    }
    expect(statSync(path)).toMatchObject({ ino, size: 2 * CURSOR_SLOT_BYTES });
    const text = readFileSync(path, 'utf8');
    // Slot 0 holds the 1st, 3rd, 5th write; slot 1 the 2nd and 4th.
    expect(JSON.parse(text.slice(0, CURSOR_SLOT_BYTES)).record.appliedSeq).toBe(46);
    expect(JSON.parse(text.slice(CURSOR_SLOT_BYTES)).record.appliedSeq).toBe(45);
    expect(readdirSync(dir)).toEqual(['cursor.json']);
  });

  it('a torn write of the newest slot falls back to the record before it; both slots damaged is WALWIRE_ERR_CURSOR_CORRUPT', () => {
    const path = join(makeTempDir(), 'cursor.json');
    writeCursorSync(path, record);
    writeCursorSync(path, { ...record, pending: null, appliedSeq: 45, durableSeq: 45 });
    const image = readFileSync(path);
    // A write into slot 1 that stopped half-way: the new line's first half over the old padding.
    const torn = Buffer.from(image);
    torn.fill(0x20, CURSOR_SLOT_BYTES + 60, 2 * CURSOR_SLOT_BYTES);
    writeFileSync(path, torn);
    expect(readCursorSync(path)).toEqual(record);
    // The next write goes into the torn slot, beside the record it fell back to.
    writeCursorSync(path, { ...record, pending: null, appliedSeq: 46, durableSeq: 46 });
    expect(readCursorSync(path).appliedSeq).toBe(46);
    const both = readFileSync(path);
    both.fill(0x20, 60, CURSOR_SLOT_BYTES);
    both.fill(0x20, CURSOR_SLOT_BYTES + 60, 2 * CURSOR_SLOT_BYTES);
    writeFileSync(path, both);
    const err = (() => {
      try {
        readCursorSync(path);
      } catch (e) {
        return e as CursorCorruptError;
      }
      return undefined;
    })();
    expect(err?.code).toBe('WALWIRE_ERR_CURSOR_CORRUPT');
    expect(err?.message).toMatch(/slot 0 not JSON.*slot 1 not JSON/);
  });

  it('the CRC covers the write count: a slot whose count was changed is damaged, not the newest', () => {
    const path = join(makeTempDir(), 'cursor.json');
    writeCursorSync(path, record);
    writeCursorSync(path, { ...record, pending: null, appliedSeq: 45, durableSeq: 45 });
    const image = readFileSync(path, 'latin1');
    // Slot 0 (n 1, the older record) claims to be write 9.
    writeFileSync(path, image.replace('"n":1,', '"n":9,'), 'latin1');
    expect(readCursorSync(path).appliedSeq).toBe(45);
  });

  it('a failed fdatasync of an in-place write makes the next write replace the file (was: it went into the slot holding the last durable record)', () => {
    const dir = makeTempDir();
    const path = join(dir, 'cursor.json');
    writeCursorSync(path, record);
    writeCursorSync(path, { ...record, pending: null, appliedSeq: 45, durableSeq: 45 });
    const { ino } = statSync(path);
    armFailpoint('replica.cursor.sync', 'errno(EIO)*1');
    try {
      expect(() => writeCursorSync(path, { ...record, pending: null, appliedSeq: 46, durableSeq: 46 })).toThrow(/EIO/);
    } finally {
      disarmAllFailpoints();
    }
    // The failed slot is in the page cache: a reader takes it for the newest.
    expect(readCursorSync(path).appliedSeq).toBe(46);
    writeCursorSync(path, { ...record, pending: null, appliedSeq: 47, durableSeq: 47 });
    expect(statSync(path).ino).not.toBe(ino);
    expect(readCursorSync(path).appliedSeq).toBe(47);
    expect(readdirSync(dir)).toEqual(['cursor.json']);
    // Then in place again.
    const replaced = statSync(path).ino;
    writeCursorSync(path, { ...record, pending: null, appliedSeq: 48, durableSeq: 48 });
    expect(statSync(path).ino).toBe(replaced);
  });

  it('a divergence reason too long for a slot is cut short, so the record always fits', () => {
    const path = join(makeTempDir(), 'cursor.json');
    const diverged = { seq: 42, expected: '0123456789abcdef', actual: 'fedcba9876543210', reason: 'x'.repeat(10_000), at: 1 };
    writeCursorSync(path, { ...record, pending: null, diverged });
    const back = readCursorSync(path);
    expect(back.diverged?.reason).toHaveLength(1024);
    expect(back.diverged?.reason.endsWith('…')).toBe(true);
  });

  it('reads a cursor file of the one-record layout, and its next write replaces it with the two-slot file', () => {
    const dir = makeTempDir();
    const path = join(dir, 'cursor.json');
    // As walwire before the two-slot layout wrote it.
    writeFileSync(path, `${JSON.stringify({ crc: 0, record })}\n`.replace('"crc":0', `"crc":${crcOf(record)}`));
    expect(readCursorSync(path)).toEqual(record);
    writeCursorSync(path, { ...record, pending: null, appliedSeq: 45, durableSeq: 45 });
    expect(statSync(path).size).toBe(2 * CURSOR_SLOT_BYTES);
    expect(readCursorSync(path).appliedSeq).toBe(45);
    expect(readdirSync(dir)).toEqual(['cursor.json']);
  });

  it('rejects a file that is not JSON or lacks fields, and a record out of range', () => {
    const path = join(makeTempDir(), 'cursor.json');
    writeFileSync(path, '{"crc":');
    expect(() => readCursorSync(path)).toThrow(/not JSON/);
    writeFileSync(path, '{"x":1}');
    expect(() => readCursorSync(path)).toThrow(/lacks the crc/);
    writeCursorSync(path, { ...record, durableSeq: 50 });
    expect(() => readCursorSync(path)).toThrow(/durableSeq/);
  });
});

describe('DurabilityTracker', () => {
  it('follows the applied seq when nothing is held', () => {
    const t = new DurabilityTracker(0, 0);
    expect(t.noteApplied(5)).toBe(5);
    expect(t.capFor(9)).toBe(9);
  });

  it('holds below a blob event until it is released, never exceeding applied', () => {
    const t = new DurabilityTracker(5, 5);
    t.hold(7);
    expect(t.noteApplied(10)).toBe(6);
    expect(t.capFor(12)).toBe(6);
    t.hold(9);
    expect(t.release(7)).toBe(8);
    expect(t.release(9)).toBe(10);
    expect(() => t.hold(3)).toThrow(InvalidTxnError);
  });

  it('latches a gap at a failed blob save until the next connection\'s re-stream passes it, and never moves backwards', () => {
    const t = new DurabilityTracker(10, 10);
    t.hold(12);
    t.latchGap(12);
    expect(t.noteApplied(20)).toBe(11);
    expect(t.gapSeq).toBe(12);
    expect(t.noteApplied(30)).toBe(11);
    t.startStream();
    expect(t.mark(30)).toBe(30);
    t.noteDurable(25);
    expect(t.durableSeq).toBe(30);
  });

  it('restarted with durable below applied: holds until the re-stream passes the applied seq (regression: durable jumped over unsaved blob events)', () => {
    const t = new DurabilityTracker(20, 12);
    expect(t.barrierSeq).toBe(20);
    expect(t.noteApplied(25)).toBe(12);
    t.startStream();
    // Re-announced blob event 15 is held before the mark arrives.
    t.hold(15);
    expect(t.noteApplied(25)).toBe(12);
    expect(t.mark(19)).toBe(12);
    expect(t.mark(25)).toBe(14);
    expect(t.release(15)).toBe(25);
  });

  it('a gap lasts for the connection; the next connection turns it into a barrier lifted by STREAM_MARK', () => {
    const t = new DurabilityTracker(10, 10);
    t.startStream();
    t.hold(11);
    t.latchGap(11);
    expect(t.noteApplied(15)).toBe(10);
    expect(t.mark(15)).toBe(10);
    t.startStream();
    expect(t.gapSeq).toBeNull();
    expect(t.barrierSeq).toBe(15);
    t.hold(11);
    expect(t.mark(15)).toBe(10);
    expect(t.release(11)).toBe(15);
  });
});

