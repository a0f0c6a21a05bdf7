/**
 * Decoder fuzzing. Every input must either decode to a valid message or
 * throw a ProtocolError; any other exception, or an input that takes too
 * long, fails the test and prints the seed and the input to replay it.
 *
 * Replay: WALWIRE_FUZZ_SEED=<seed> WALWIRE_FUZZ_RUNS=<n> npx vitest run packages/protocol/test/fuzz.test.ts
 *
 * Inputs (seeded PRNG, no shared state between cases):
 * - raw random frames (mostly stopped by the CRC);
 * - random bodies sealed with a correct CRC, so they reach the MessagePack
 *   decoder and the validator;
 * - byte-level mutations of valid messages (bit flips, byte overwrite,
 *   insert, delete, truncate, splice), resealed;
 * - structure-aware mutations: one field of a valid message replaced by a
 *   value of another type or an extreme number, then encoded and sealed.
 * - chunk frames built by chunkFrame (large enough for the decoder's
 *   split CRC), mutated in place or mutated and resealed.
 */
import { describe, expect, it } from 'vitest';
import { chunkContentCrc, chunkFrame, crc32, decodeMessage, encodeBody, encodeMessage, MessageType, ProtocolError, seal, type Message } from '@walwire/protocol';
import { sampleMessages } from './fixtures.js';

const SEED = Number(process.env['WALWIRE_FUZZ_SEED'] ?? 0x5eed2026);
const RUNS = Number(process.env['WALWIRE_FUZZ_RUNS'] ?? 12_000);
const SLOW_MS = 250;

/** mulberry32: small, fast, good enough to drive a fuzzer reproducibly. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rand = () => number;
const int = (r: Rand, n: number): number => Math.floor(r() * n);

function randomBytes(r: Rand, max: number): Uint8Array {
  const out = new Uint8Array(int(r, max + 1));
  for (let i = 0; i < out.length; i++) out[i] = int(r, 256);
  return out;
}

// Small bodies only: the point is to reach every branch, not to allocate.
const smallSamples = (): Message[] =>
  sampleMessages().map((m) => {
    if ('txns' in m) return { ...m, txns: m.txns.map((t) => ({ ...t, pages: t.pages.map((p) => ({ pgno: p.pgno, data: p.data.subarray(0, 512) })) })) };
    if (m.type === 4) return { ...m, pages: m.pages.map((p) => ({ pgno: p.pgno, data: p.data.subarray(0, 512) })) };
    if (m.type === 11) return { ...m, data: m.data.subarray(0, 64) };
    return m;
  });

function mutateBytes(r: Rand, body: Uint8Array, other: Uint8Array): Uint8Array {
  const b = Array.from(body);
  const ops = 1 + int(r, 4);
  for (let k = 0; k < ops; k++) {
    const at = int(r, Math.max(1, b.length));
    switch (int(r, 7)) {
      case 0:
        b[at] = (b[at] ?? 0) ^ (1 << int(r, 8));
        break;
      case 1:
        b[at] = int(r, 256);
        break;
      case 2:
        b.splice(at, 0, ...Array.from({ length: 1 + int(r, 8) }, () => int(r, 256)));
        break;
      case 3:
        b.splice(at, 1 + int(r, 8));
        break;
      case 4:
        b.length = at;
        break;
      case 5:
        b.splice(at, 0, ...Array.from(other.subarray(int(r, other.length), int(r, other.length) + 32)));
        break;
      default:
        // Interesting MessagePack markers: big lengths, ext types, reserved bytes.
        b[at] = [0xc1, 0xc7, 0xc8, 0xc9, 0xd4, 0xd8, 0xdc, 0xdd, 0xde, 0xdf, 0xdb, 0xc6, 0xcf, 0xd3, 0xcb, 0xff][int(r, 16)]!;
    }
  }
  return Uint8Array.from(b);
}

const WEIRD: unknown[] = [
  null, true, false, 0, -1, 1.5, 2 ** 53, -(2 ** 53), 2 ** 32, 0xffffffff, Number.NaN, Infinity, '', 'x'.repeat(70),
  'app', '../x', '0'.repeat(32), '0'.repeat(16), [], [1, 2], {}, { pgno: 1 }, new Uint8Array(0), new Uint8Array(513),
];

function mutateStructure(r: Rand, msg: Message): unknown {
  const clone = structuredClone(msg) as unknown as Record<string, unknown>;
  // Walk to a random nested container and replace or delete one key, or add one.
  let target: Record<string, unknown> | unknown[] = clone;
  for (let depth = 0; depth < 3; depth++) {
    const keys = Object.keys(target);
    const key = keys[int(r, keys.length)];
    if (key === undefined) break;
    const next = (target as Record<string, unknown>)[key];
    if (typeof next === 'object' && next !== null && !(next instanceof Uint8Array) && r() < 0.6) {
      target = next as Record<string, unknown>;
    } else break;
  }
  const keys = Object.keys(target);
  const key = keys[int(r, keys.length)] ?? 'extra';
  const choice = int(r, 10);
  if (choice === 0) delete (target as Record<string, unknown>)[key];
  else if (choice === 1) (target as Record<string, unknown>)['extra'] = WEIRD[int(r, WEIRD.length)];
  else (target as Record<string, unknown>)[key] = WEIRD[int(r, WEIRD.length)];
  return clone;
}

function check(input: Uint8Array, label: string, stats: Record<string, number>): void {
  const started = performance.now();
  let outcome: string;
  try {
    const msg = decodeMessage(input);
    // Whatever decodes must re-encode and decode to the same thing.
    expect(decodeMessage(encodeMessage(msg)).type).toBe(msg.type);
    outcome = 'valid';
  } catch (err) {
    if (!(err instanceof ProtocolError)) {
      throw new Error(
        `${label}: non-ProtocolError ${(err as Error)?.name}: ${(err as Error)?.message}\n` +
          `seed ${SEED}, input ${Buffer.from(input).toString('hex').slice(0, 400)}`,
      );
    }
    outcome = err.code;
  }
  const elapsed = performance.now() - started;
  if (elapsed > SLOW_MS) throw new Error(`${label}: took ${elapsed.toFixed(0)} ms (seed ${SEED})`);
  stats[outcome] = (stats[outcome] ?? 0) + 1;
}

describe(`decoder fuzz (seed ${SEED}, ${RUNS} inputs)`, () => {
  it('every input decodes to a valid message or throws ProtocolError', () => {
    const r = prng(SEED);
    const samples = smallSamples();
    const bodies = samples.map((m) => encodeBody(m));
    const stats: Record<string, number> = {};
    for (let i = 0; i < RUNS; i++) {
      const kind = i % 10;
      let input: Uint8Array;
      if (kind === 0) input = randomBytes(r, 256);
      else if (kind <= 2) input = seal(randomBytes(r, 256));
      else if (kind <= 6) {
        const k = int(r, bodies.length);
        input = seal(mutateBytes(r, bodies[k]!, bodies[int(r, bodies.length)]!));
      } else {
        input = seal(encodeBody(mutateStructure(r, samples[int(r, samples.length)]!)));
      }
      check(input, `input ${i} (kind ${kind})`, stats);
    }
    // The fuzzer must reach every layer: CRC, MessagePack, schema, and valid output.
    expect(stats['WALWIRE_ERR_FRAME_CHECKSUM']).toBeGreaterThan(0);
    expect(stats['WALWIRE_ERR_DECODE']).toBeGreaterThan(0);
    expect(stats['WALWIRE_ERR_INVALID_MESSAGE']).toBeGreaterThan(0);
    expect(stats['valid']).toBeGreaterThan(0);
    const total = Object.values(stats).reduce((a, b) => a + b, 0);
    expect(total).toBe(RUNS);
    console.log(`fuzz seed ${SEED}: ${JSON.stringify(stats)}`);
  }, 120_000);
});

describe(`chunk frame fuzz (seed ${SEED})`, () => {
  it('a mutated chunkFrame frame fails its CRC, or (resealed) decodes with a content CRC that is right', () => {
    const r = prng(SEED ^ 0xc4c4);
    const stats: Record<string, number> = {};
    for (let i = 0; i < RUNS / 6; i++) {
      const length = 4096 + int(r, 6000);
      const b = chunkFrame({ type: MessageType.BLOB_CHUNK, ns: 'app', generation: '0'.repeat(32), seq: 1 + int(r, 1e6), blobId: 'b.bin', offset: int(r, 1e9) }, length);
      for (let k = 0; k < length; k++) b.data[k] = int(r, 256);
      const frame = b.seal(crc32(b.data));
      const body = frame.subarray(0, frame.length - 4);
      // Mutations concentrate on the head and tail, where the split is found.
      const region = int(r, 2) === 0 ? body.subarray(0, 80) : body.subarray(body.length - 20);
      const mutated = mutateBytes(r, region, body);
      const changed = Buffer.concat([body.subarray(0, region.byteOffset - body.byteOffset), mutated, body.subarray(region.byteOffset - body.byteOffset + region.length)]);
      const resealed = int(r, 2) === 0;
      const input = resealed ? seal(changed) : Buffer.concat([changed, frame.subarray(frame.length - 4)]);
      const same = !resealed && changed.equals(body);
      try {
        const m = decodeMessage(input);
        if (!resealed && !same) throw new Error(`input ${i}: a mutated frame with its old CRC decoded (seed ${SEED})`);
        if (m.type === MessageType.BLOB_CHUNK) expect(chunkContentCrc(m)).toBe(crc32(m.data));
        stats['valid'] = (stats['valid'] ?? 0) + 1;
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
        if (!resealed && !same) expect(err.code).toBe('WALWIRE_ERR_FRAME_CHECKSUM');
        stats[err.code] = (stats[err.code] ?? 0) + 1;
      }
    }
    expect(stats['WALWIRE_ERR_FRAME_CHECKSUM']).toBeGreaterThan(0);
    expect(stats['valid']).toBeGreaterThan(0);
    console.log(`chunk fuzz seed ${SEED}: ${JSON.stringify(stats)}`);
  }, 120_000);
});
