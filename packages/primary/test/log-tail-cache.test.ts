import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { LogTailCache } from '@walwire/primary';

const G = 'a'.repeat(32);

describe('LogTailCache', () => {
  it('holds the newest consecutive records within its capacity, byte-exact, across many wraps of the ring (model check)', () => {
    // Record sizes from 1 byte to the whole capacity, so records straddle
    // the end of the ring, fill it exactly, and evict one or many at once.
    const capacity = 4096;
    const cache = new LogTailCache(capacity);
    const model: Buffer[] = [];
    let seed = 7;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed % n;
    };
    for (let seq = 1; seq <= 5000; seq++) {
      const size = rand(8) === 0 ? 1 + rand(capacity) : 1 + rand(300);
      const record = randomBytes(size);
      model[seq] = Buffer.from(record);
      cache.add(G, seq, record);
      record.fill(0); // the cache holds its own copy
      // Whatever is cached is exact, and it is a suffix of the seqs ending at `seq`.
      let oldest = seq + 1;
      for (let s = seq; s >= 1 && cache.has(G, s); s--) {
        expect(cache.get(G, s)!.equals(model[s]!)).toBe(true);
        oldest = s;
      }
      expect(cache.has(G, oldest - 1)).toBe(false);
      expect(cache.has(G, seq + 1)).toBe(false);
      let held = 0;
      for (let s = oldest; s <= seq; s++) held += model[s]!.length;
      expect(cache.bytes).toBe(held);
      expect(held).toBeLessThanOrEqual(capacity);
    }
  });

  it('evicts only what the ring needs: with records of at most 300 bytes, over capacity − 600 bytes stay cached once full', () => {
    // The ring loses at most one record's room at its end (a record that
    // did not fit there goes to offset 0) and one before the oldest record.
    const capacity = 8192;
    const cache = new LogTailCache(capacity);
    let total = 0;
    for (let seq = 1; seq <= 2000; seq++) {
      const size = 1 + ((seq * 7919) % 300);
      cache.add(G, seq, Buffer.alloc(size, seq & 0xff));
      total += size;
      if (total > capacity) expect(cache.bytes).toBeGreaterThan(capacity - 600);
    }
  });

  it('a reader\'s copy is its own: changing it changes no later read', () => {
    const cache = new LogTailCache(1024);
    cache.add(G, 1, Buffer.alloc(100, 1));
    cache.get(G, 1)!.fill(9);
    expect(cache.get(G, 1)!.equals(Buffer.alloc(100, 1))).toBe(true);
  });

  it('a gap in seqs, another generation or a record larger than the capacity empties it; capacity 0 caches nothing', () => {
    const cache = new LogTailCache(1024);
    cache.add(G, 1, Buffer.alloc(10, 1));
    cache.add(G, 2, Buffer.alloc(10, 2));
    cache.add(G, 4, Buffer.alloc(10, 4));
    expect([cache.has(G, 1), cache.has(G, 2), cache.has(G, 4)]).toEqual([false, false, true]);
    const H = 'b'.repeat(32);
    cache.add(H, 5, Buffer.alloc(10, 5));
    expect([cache.has(G, 4), cache.has(G, 5), cache.has(H, 5)]).toEqual([false, false, true]);
    cache.add(H, 6, Buffer.alloc(2000));
    expect([cache.has(H, 5), cache.has(H, 6), cache.bytes]).toEqual([false, false, 0]);
    const none = new LogTailCache(0);
    none.add(G, 1, Buffer.alloc(1));
    expect(none.has(G, 1)).toBe(false);
  });
});
