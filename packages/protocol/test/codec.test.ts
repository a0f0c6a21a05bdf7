import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { Packr } from 'msgpackr';
import {
  DEFAULT_PROTOCOL_LIMITS,
  MessageType,
  chunkContentCrc,
  chunkFrame,
  crc32,
  crc32Combine,
  ProtocolError,
  decodeBody,
  decodeMessage,
  encodeBody,
  encodeMessage,
  negotiateVersion,
  resolveProtocolLimits,
  seal,
  type ChunkHead,
  type Message,
} from '@walwire/protocol';
import { GEN, SUM, page, sampleMessages } from './fixtures.js';

/** Seals an arbitrary body with a correct CRC, so the decoder and validator see it. */
const frameOf = (body: unknown): Buffer => seal(encodeBody(body));

/** Plain-data form with byte fields as hex, so Buffer and Uint8Array compare equal. */
function normalize(value: unknown): unknown {
  if (value instanceof Uint8Array) return Buffer.from(value).toString('hex');
  if (Array.isArray(value)) return value.map(normalize);
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, normalize(v)]));
  }
  return value;
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ProtocolError);
    return (err as ProtocolError).code;
  }
  throw new Error('expected a ProtocolError');
}

describe('envelope byte fixtures', () => {
  it('encodes HEARTBEAT to pinned bytes: fixmap body then CRC-32 big-endian', () => {
    const frame = encodeMessage({ type: MessageType.HEARTBEAT, sentAt: 1 });
    expect(frame.toString('hex')).toBe('82a4747970650fa673656e74417401d55a8aad');
  });

  it('decodes pinned ACK bytes', () => {
    const hex =
      '85a4747970650ea26e73a3617070aa67656e65726174696f6ed9203031323334353637383961626364656630313233343536373839616263646566aa6170706c69656453657107aa64757261626c6553657105388a34a3';
    expect(decodeMessage(Buffer.from(hex, 'hex'))).toEqual({
      type: MessageType.ACK,
      ns: 'app',
      generation: GEN,
      appliedSeq: 7,
      durableSeq: 5,
    });
  });

  it('rejects a flipped bit anywhere in the frame with WALWIRE_ERR_FRAME_CHECKSUM', () => {
    const frame = encodeMessage({ type: MessageType.HEARTBEAT, sentAt: 1 });
    for (let i = 0; i < frame.length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        const copy = Buffer.from(frame);
        copy[i]! ^= 1 << bit;
        expect(codeOf(() => decodeMessage(copy))).toBe('WALWIRE_ERR_FRAME_CHECKSUM');
      }
    }
  });

  it('rejects frames too short to hold an envelope', () => {
    for (const n of [0, 1, 4]) expect(codeOf(() => decodeMessage(new Uint8Array(n)))).toBe('WALWIRE_ERR_DECODE');
  });

  it('rejects a body that is not one MessagePack value', () => {
    // 0xc1 is reserved; msgpackr yields a marker object, which the schema refuses as not a map.
    expect(codeOf(() => decodeMessage(seal(Uint8Array.of(0xc1))))).toBe('WALWIRE_ERR_INVALID_MESSAGE');
    expect(codeOf(() => decodeMessage(seal(Uint8Array.of(0x92, 0x01))))).toBe('WALWIRE_ERR_DECODE');
    const twoValues = Buffer.concat([encodeBody({ type: 15, sentAt: 1 }), Uint8Array.of(0x01)]);
    expect(codeOf(() => decodeMessage(seal(twoValues)))).toBe('WALWIRE_ERR_DECODE');
  });

  it('rejects frames above maxMessageBytes before reading them', () => {
    const limits = resolveProtocolLimits({ maxMessageBytes: 1024, maxChunkBytes: 1024 });
    const big = new Uint8Array(1025);
    expect(codeOf(() => decodeMessage(big, limits))).toBe('WALWIRE_ERR_MESSAGE_TOO_LARGE');
  });

  it('refuses to encode a message above maxMessageBytes', () => {
    const limits = resolveProtocolLimits({ maxMessageBytes: 4096, maxChunkBytes: 1024 });
    const msg: Message = { type: MessageType.TXN, ns: 'a', generation: GEN, txns: [{ seq: 1, commitSize: 1, checksum: SUM, commitTime: 0, pages: [page(1, 0)] }] };
    expect(codeOf(() => encodeMessage(msg, limits))).toBe('WALWIRE_ERR_MESSAGE_TOO_LARGE');
  });
});

describe('round trips', () => {
  it.each(sampleMessages().map((m) => [m.type, m] as const))('type %i survives encode/decode unchanged', (_type, msg) => {
    const decoded = decodeMessage(encodeMessage(msg));
    expect(normalize(decoded)).toEqual(normalize(msg));
  });

  it('returns byte fields as views of the frame (no copy)', () => {
    const frame = encodeMessage(sampleMessages()[5]!);
    const decoded = decodeMessage(frame) as { data: Uint8Array };
    expect(decoded.data.buffer).toBe(frame.buffer);
  });

  it('decodes messages independently: no state carried from one frame to the next', () => {
    const frames = sampleMessages().map((m) => encodeMessage(m));
    const forward = frames.map((f) => JSON.stringify(decodeMessage(f)));
    const backward = [...frames].reverse().map((f) => JSON.stringify(decodeMessage(f))).reverse();
    expect(backward).toEqual(forward);
    expect(encodeMessage(sampleMessages()[0]!).equals(frames[0]!)).toBe(true);
  });

  it('a frame or body is never overwritten by later encodes, also after one outgrows the reused pack buffer', () => {
    // Bodies are packed into one reused buffer; frames and encodeBody results must be copies.
    const big: Message = {
      type: MessageType.TXN,
      ns: 'app',
      generation: GEN,
      txns: [{ seq: 1, commitSize: 800, checksum: SUM, commitTime: 1, pages: Array.from({ length: 800 }, (_, i) => page(i + 1, i & 0xff)) }],
    };
    const messages = [...sampleMessages(), big, ...sampleMessages()];
    const frames = messages.map((m) => encodeMessage(m));
    const bodies = messages.map((m) => encodeBody(m));
    const snapshot = [...frames, ...bodies].map((b) => Buffer.from(b));
    const chunk = chunkFrame({ type: MessageType.BLOB_CHUNK, ns: 'app', generation: GEN, blobId: 'b', seq: 1, offset: 0 }, 4);
    chunk.data.set([1, 2, 3, 4]);
    chunk.seal(crc32(Buffer.from([1, 2, 3, 4])));
    encodeMessage(big);
    [...frames, ...bodies].forEach((b, i) => expect(b.equals(snapshot[i]!), `buffer ${i}`).toBe(true));
    messages.forEach((m, i) => expect(normalize(decodeMessage(frames[i]!))).toEqual(normalize(m)));
  });

  it('builds a frame in memory the caller provides when it fits, and in new memory otherwise', () => {
    const msg = sampleMessages()[5]!;
    const expected = encodeMessage(msg);
    const asked: number[] = [];
    const memory = Buffer.alloc(expected.length + 100, 0xee);
    const inside = encodeMessage(msg, DEFAULT_PROTOCOL_LIMITS, (bytes) => (asked.push(bytes), memory));
    expect(asked).toEqual([expected.length]);
    expect(inside.buffer).toBe(memory.buffer);
    expect(inside.byteOffset).toBe(memory.byteOffset);
    expect(inside.equals(expected)).toBe(true);
    expect(memory[expected.length]).toBe(0xee);
    const small = Buffer.alloc(expected.length - 1);
    const outside = encodeMessage(msg, DEFAULT_PROTOCOL_LIMITS, () => small);
    expect(outside.buffer).not.toBe(small.buffer);
    expect(outside.equals(expected)).toBe(true);
    expect(encodeMessage(msg, DEFAULT_PROTOCOL_LIMITS, () => undefined).equals(expected)).toBe(true);
  });

  it('does not write into what another msgpackr Packr in the process returned (msgpackr shares its buffer state)', () => {
    const other = new Packr();
    const theirs = other.pack({ hello: 'world', n: 1 });
    const copy = Buffer.from(theirs);
    encodeMessage(sampleMessages()[0]!);
    const theirsNext = other.pack({ hello: 'again', n: 2 });
    const nextCopy = Buffer.from(theirsNext);
    encodeMessage({ type: MessageType.TXN, ns: 'app', generation: GEN, txns: [{ seq: 1, commitSize: 1, checksum: SUM, commitTime: 1, pages: [page(1, 7)] }] });
    chunkFrame({ type: MessageType.BLOB_CHUNK, ns: 'app', generation: GEN, blobId: 'b', seq: 1, offset: 0 }, 4).seal(0);
    expect(theirs.equals(copy)).toBe(true);
    expect(theirsNext.equals(nextCopy)).toBe(true);
  });
});

describe('validation', () => {
  const base = sampleMessages();
  const txn = base[2] as Extract<Message, { type: 3 }>;

  const cases: [string, unknown, string, RegExp?][] = [
    ['a non-map body', [1, 2], 'WALWIRE_ERR_INVALID_MESSAGE', /message: expected a map/],
    ['a missing type', { sentAt: 1 }, 'WALWIRE_ERR_INVALID_MESSAGE', /message.type/],
    ['an unknown type', { type: 99 }, 'WALWIRE_ERR_UNKNOWN_MESSAGE_TYPE', /99 is not a message type/],
    ['a missing field', { type: 15 }, 'WALWIRE_ERR_INVALID_MESSAGE', /HEARTBEAT.sentAt: required field is missing/],
    ['an extra field', { type: 15, sentAt: 1, evil: true }, 'WALWIRE_ERR_INVALID_MESSAGE', /unexpected field "evil"/],
    ['a negative integer', { type: 15, sentAt: -1 }, 'WALWIRE_ERR_INVALID_MESSAGE', /HEARTBEAT.sentAt: expected an integer .* received -1/],
    ['a float', { type: 15, sentAt: 1.5 }, 'WALWIRE_ERR_INVALID_MESSAGE'],
    ['a bad namespace', { ...base[13], ns: 'Bad Name' }, 'WALWIRE_ERR_INVALID_MESSAGE', /ACK.ns: expected a namespace name, received "Bad Name"/],
    ['a bad generation', { ...base[13], generation: 'xyz' }, 'WALWIRE_ERR_INVALID_MESSAGE', /generation id/],
    ['durable above applied', { ...base[13], durableSeq: 17 }, 'WALWIRE_ERR_INVALID_MESSAGE', /durableSeq: expected at most appliedSeq 16/],
    ['an empty TXN', { ...txn, txns: [] }, 'WALWIRE_ERR_INVALID_MESSAGE', /array of 1 to/],
    ['seqs out of order', { ...txn, txns: [txn.txns[1], txn.txns[0]] }, 'WALWIRE_ERR_INVALID_MESSAGE', /txns\[1\].seq: expected a seq above 13/],
    [
      'a page beyond commitSize',
      { ...txn, txns: [{ ...txn.txns[0]!, pages: [page(4, 0)] }] },
      'WALWIRE_ERR_INVALID_MESSAGE',
      /pgno: expected a page number at most commitSize 3/,
    ],
    [
      'a repeated page',
      { ...txn, txns: [{ ...txn.txns[0]!, pages: [page(2, 0), page(2, 1)] }] },
      'WALWIRE_ERR_INVALID_MESSAGE',
      /not repeated/,
    ],
    [
      'mixed page sizes',
      { ...txn, txns: [{ ...txn.txns[0]!, pages: [page(1, 0), page(2, 0, 1024)] }] },
      'WALWIRE_ERR_INVALID_MESSAGE',
      /a page of 4096 bytes/,
    ],
    [
      'a page that is not a power of two',
      { ...txn, txns: [{ ...txn.txns[0]!, pages: [{ pgno: 1, data: new Uint8Array(1000) }] }] },
      'WALWIRE_ERR_INVALID_MESSAGE',
      /power of two/,
    ],
    ['page 0', { ...txn, txns: [{ ...txn.txns[0]!, pages: [page(0, 0)] }] }, 'WALWIRE_ERR_INVALID_MESSAGE'],
    ['part >= partCount', { ...base[3], part: 2 }, 'WALWIRE_ERR_INVALID_MESSAGE', /below partCount 2/],
    ['a blob id with a slash', { ...base[6], blobId: '../etc/passwd' }, 'WALWIRE_ERR_INVALID_MESSAGE', /blob id/],
    ['a blob id starting with a dot', { ...base[6], blobId: '.hidden' }, 'WALWIRE_ERR_INVALID_MESSAGE', /blob id/],
    ['a chunk above maxChunkBytes', { ...base[5], data: new Uint8Array(DEFAULT_PROTOCOL_LIMITS.maxChunkBytes + 1) }, 'WALWIRE_ERR_INVALID_MESSAGE', /bytes of at most/],
    ['a manifest with the wrong chunk count', { ...base[9], chunkCrcs: [1, 2] }, 'WALWIRE_ERR_INVALID_MESSAGE', /3 entries/],
    ['a manifest with a bad page size', { ...base[9], pageSize: 3000 }, 'WALWIRE_ERR_INVALID_MESSAGE', /power of two/],
    ['a HELLO with min above max', { ...base[0], minVersion: 3, maxVersion: 2 }, 'WALWIRE_ERR_INVALID_MESSAGE', /at most maxVersion 2/],
    ['a bad WELCOME mode', { ...base[1], namespaces: [{ ns: 'a', generation: GEN, headSeq: 1, mode: 'later', reason: '' }] }, 'WALWIRE_ERR_INVALID_MESSAGE', /one of stream, snapshot/],
    ['an ERROR with a foreign code', { ...base[15], code: 'EPERM' }, 'WALWIRE_ERR_INVALID_MESSAGE', /an error code/],
    ['an over-long string', { ...base[15], message: 'x'.repeat(5000) }, 'WALWIRE_ERR_INVALID_MESSAGE', /at most 4096 characters/],
  ];

  it.each(cases)('rejects %s', (_name, body, code, pattern) => {
    let caught: unknown;
    try {
      decodeMessage(frameOf(body));
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ProtocolError);
    expect((caught as ProtocolError).code).toBe(code);
    if (pattern) expect((caught as Error).message).toMatch(pattern);
  });

  it('enforces maxPagesPerMessage across the whole message', () => {
    const limits = resolveProtocolLimits({ maxPagesPerMessage: 2 });
    const msg = { ...txn, txns: [{ ...txn.txns[0]!, pages: [page(1, 0), page(2, 0)] }, { ...txn.txns[1]!, pages: [page(3, 0)] }] };
    expect(() => decodeMessage(frameOf(msg), limits)).toThrow(/more than 2 pages/);
  });

  it('keeps __proto__ keys inert', () => {
    const body = Buffer.concat([Uint8Array.of(0x83), encodeBody('type'), encodeBody(15), encodeBody('sentAt'), encodeBody(1), encodeBody('__proto__'), encodeBody({ polluted: true })]);
    expect(codeOf(() => decodeMessage(seal(body)))).toBe('WALWIRE_ERR_INVALID_MESSAGE');
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });

  it('decodeBody maps decoder failures to DecodeError', () => {
    expect(() => decodeBody(Uint8Array.of(0xdd, 0xff, 0xff, 0xff, 0xff))).toThrow(expect.objectContaining({ code: 'WALWIRE_ERR_DECODE' }));
  });
});

describe('version negotiation', () => {
  it('picks the highest common version', () => {
    expect(negotiateVersion(1, 1)).toBe(1);
    expect(negotiateVersion(1, 5, 1, 3)).toBe(3);
    expect(negotiateVersion(2, 9, 1, 4)).toBe(4);
  });

  it('rejects disjoint ranges with WALWIRE_ERR_UNSUPPORTED_VERSION naming both ranges', () => {
    expect(() => negotiateVersion(2, 3, 1, 1)).toThrow(
      expect.objectContaining({ code: 'WALWIRE_ERR_UNSUPPORTED_VERSION', message: 'peer speaks protocol versions 2..3, this build speaks 1..1' }),
    );
  });
});

describe('limits', () => {
  it('names the option and the value received', () => {
    expect(() => resolveProtocolLimits({ maxMessageBytes: 12 })).toThrow(
      expect.objectContaining({ code: 'WALWIRE_ERR_INVALID_OPTION', message: 'option maxMessageBytes must be an integer from 1024 to 1073741824, received 12' }),
    );
    expect(() => resolveProtocolLimits({ maxChunkBytes: 'big' as unknown as number })).toThrow(/maxChunkBytes .* received "big"/);
  });
});

describe('chunk frames built in place (BLOB_CHUNK, SNAPSHOT_CHUNK)', () => {
  it('crc32Combine equals the CRC of the concatenation', () => {
    for (const [la, lb] of [[0, 0], [0, 7], [7, 0], [1, 1], [13, 4096], [300, 262_144], [5, 1_048_577]] as const) {
      const a = randomBytes(la);
      const b = randomBytes(lb);
      expect(crc32Combine(crc32(a), crc32(b), lb)).toBe(crc32(Buffer.concat([a, b])));
    }
  });

  /** Builds `head`'s frame around `content` in place; checks it decodes as encodeMessage's would. Returns the builder and the frame. */
  function buildAndCheck(head: ChunkHead, content: Buffer): { b: ReturnType<typeof chunkFrame>; frame: Buffer; crc: number } {
    const b = chunkFrame(head, content.length);
    expect(b.data.length).toBe(content.length);
    content.copy(b.data);
    const crc = crc32(content);
    const frame = b.seal(crc);
    const expected = { ...head, data: content, crc } as Message;
    expect(normalize(decodeMessage(frame))).toEqual(normalize(decodeMessage(encodeMessage(expected))));
    expect(normalize(decodeMessage(frame))).toEqual(normalize(expected));
    return { b, frame, crc };
  }

  it.each([0, 1, 200, 65_535, 65_536, 262_144])('BLOB_CHUNK: decodes to the message encodeMessage gives, %i content bytes', (length) => {
    const content = randomBytes(length);
    for (const offset of [0, 1, 2 ** 20, 2 ** 33 + 5]) {
      const { frame } = buildAndCheck({ type: MessageType.BLOB_CHUNK, ns: 'app', generation: GEN, seq: 42, blobId: 'big-0.bin', offset }, content);
      if (length > 0) {
        const flipped = Buffer.from(frame);
        flipped[frame.length - 20 - Math.floor(length / 2)]! ^= 0x10;
        expect(codeOf(() => decodeMessage(flipped))).toBe('WALWIRE_ERR_FRAME_CHECKSUM');
      }
    }
  });

  it.each([0, 4096, 4 * 1024 * 1024])('SNAPSHOT_CHUNK: decodes to the message encodeMessage gives, %i content bytes', (length) => {
    const { b, crc } = buildAndCheck({ type: MessageType.SNAPSHOT_CHUNK, ns: 'app', generation: GEN, seq: 7, index: 3 }, randomBytes(length));
    // Sealed with a CRC its content does not have (a stored CRC gone stale): the frame fails its own check.
    if (length > 0) expect(codeOf(() => decodeMessage(b.seal((crc ^ 1) >>> 0)))).toBe('WALWIRE_ERR_FRAME_CHECKSUM');
  });

  it('refuses content that cannot fit maxMessageBytes', () => {
    const limits = resolveProtocolLimits({ maxMessageBytes: 4096, maxChunkBytes: 4096 });
    const head = { type: MessageType.BLOB_CHUNK, ns: 'app', generation: GEN, seq: 1, blobId: 'x', offset: 0 } as const;
    expect(codeOf(() => chunkFrame(head, 4096, limits))).toBe('WALWIRE_ERR_MESSAGE_TOO_LARGE');
    expect(chunkFrame(head, 3900, limits).data.length).toBe(3900);
  });
});

describe('large frames: the CRC is checked before anything is parsed', () => {
  const content = randomBytes(300_000);
  const msg = { type: MessageType.BLOB_CHUNK, ns: 'app', generation: GEN, seq: 9, blobId: 'big-0.bin', offset: 0, data: content, crc: crc32(content) } as const;

  it('a flipped byte anywhere (head, data, tail, trailer) is a checksum failure, never a decode or validation error', () => {
    const frame = encodeMessage(msg);
    for (const at of [0, 1, 5, 30, 60, frame.length - 300_000 - 20, frame.length / 2, frame.length - 12, frame.length - 6, frame.length - 1]) {
      for (const bit of [0x01, 0x80]) {
        const bad = Buffer.from(frame);
        bad[Math.floor(at)]! ^= bit;
        expect(codeOf(() => decodeMessage(bad)), `byte ${at} bit ${bit}`).toBe('WALWIRE_ERR_FRAME_CHECKSUM');
      }
    }
  });

  it('a chunkFrame frame (CRC computed around its content and combined): a flipped byte anywhere is a checksum failure', () => {
    const b = chunkFrame({ type: MessageType.BLOB_CHUNK, ns: 'app', generation: GEN, seq: 9, blobId: 'big-0.bin', offset: 0 }, content.length);
    content.copy(b.data);
    const frame = b.seal(crc32(content));
    const dataAt = b.data.byteOffset - b.buffer.byteOffset;
    // Every byte of the head (including the "data" key and the bin 32 length the split is found from), the tail and the trailer; a sample of the content.
    const positions = [...Array(dataAt + 8).keys(), ...[...Array(13).keys()].map((i) => frame.length - 1 - i)];
    for (let at = dataAt; at < frame.length - 13; at += 9973) positions.push(at);
    for (const at of positions) {
      for (const bit of [0x01, 0x80]) {
        const bad = Buffer.from(frame);
        bad[at]! ^= bit;
        expect(codeOf(() => decodeMessage(bad)), `byte ${at} bit ${bit}`).toBe('WALWIRE_ERR_FRAME_CHECKSUM');
      }
    }
  });

  it('chunkContentCrc gives the content CRC computed while the envelope was checked (the content is read once)', () => {
    const b = chunkFrame({ type: MessageType.BLOB_CHUNK, ns: 'app', generation: GEN, seq: 9, blobId: 'big-0.bin', offset: 0 }, content.length);
    content.copy(b.data);
    const m = decodeMessage(b.seal(crc32(content)));
    if (m.type !== MessageType.BLOB_CHUNK) throw new Error('not a chunk');
    expect(chunkContentCrc(m)).toBe(crc32(content));
    // Changed after decoding: the remembered value is the one the envelope check proved, not a second pass.
    m.data[7]! ^= 1;
    expect(chunkContentCrc(m)).toBe(crc32(content));
    expect(chunkContentCrc({ ...m, data: Buffer.from(m.data) })).not.toBe(crc32(content));
  });

  it('a chunk whose crc field lies under a valid envelope still fails chunkContentCrc (generic layout and chunkFrame layout)', () => {
    const lying = { ...msg, crc: (msg.crc ^ 4) >>> 0 };
    const generic = decodeMessage(encodeMessage(lying));
    if (generic.type !== MessageType.BLOB_CHUNK) throw new Error('not a chunk');
    expect(chunkContentCrc(generic)).not.toBe(generic.crc);
    // chunkFrame derives the envelope from the crc it is given: a frame sealed with a wrong one never decodes.
    const b = chunkFrame({ type: MessageType.BLOB_CHUNK, ns: 'app', generation: GEN, seq: 9, blobId: 'big-0.bin', offset: 0 }, content.length);
    content.copy(b.data);
    expect(codeOf(() => decodeMessage(b.seal(lying.crc)))).toBe('WALWIRE_ERR_FRAME_CHECKSUM');
  });

  it('chunkFrame builds in `into` when it is large enough, and in new memory when not', () => {
    const head = { type: MessageType.BLOB_CHUNK, ns: 'app', generation: GEN, seq: 9, blobId: 'x', offset: 0 } as const;
    const into = Buffer.alloc(70_000);
    const b = chunkFrame(head, 65_536, DEFAULT_PROTOCOL_LIMITS, into);
    expect(b.buffer).toBe(into);
    b.data.fill(7);
    expect(normalize(decodeMessage(b.seal(crc32(b.data))))).toEqual(normalize({ ...head, data: Buffer.alloc(65_536, 7), crc: crc32(Buffer.alloc(65_536, 7)) }));
    const small = chunkFrame(head, 65_536, DEFAULT_PROTOCOL_LIMITS, Buffer.alloc(65_536));
    expect(small.buffer.length).toBeGreaterThan(65_536);
  });

  it('a large body with a valid CRC that is not MessagePack is a decode error', () => {
    const body = Buffer.concat([Buffer.from([0xc1]), randomBytes(100_000)]);
    expect(codeOf(() => decodeMessage(seal(body)))).toBe('WALWIRE_ERR_DECODE');
  });
});
