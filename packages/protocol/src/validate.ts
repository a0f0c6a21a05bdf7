/**
 * Per-message validation. Runs on every decoded message before any field is
 * used: types, ranges, sizes, and the cross-field rules a receiver relies on
 * (pages within commitSize, one page size per message, strictly increasing
 * seqs). Failures throw InvalidMessageError naming the field path and the
 * value received; an unknown type throws UnknownMessageTypeError.
 */
import { InvalidMessageError, UnknownMessageTypeError } from './errors.js';
import { type Message, MessageType, messageTypeName } from './messages.js';
import { isBlobId, isChecksum, isGeneration, isNamespace, isSha256 } from './names.js';
import { describe, type ProtocolLimits } from './options.js';
import { isValidPageSize } from './sqlite/page1.js';

interface Ctx {
  readonly limits: ProtocolLimits;
  /** Pages seen so far in this message (bounded by maxPagesPerMessage). */
  pages: number;
  /** Page size of the first page in this message; 0 until one is seen. */
  pageSize: number;
}

type Check = (value: unknown, path: string, ctx: Ctx) => void;
type Shape = Readonly<Record<string, Check>>;

const MAX_U32 = 0xffffffff;
/** SQLite's largest page number (fileformat2.html §1.3.9: max page count). */
const MAX_PGNO = 0xfffffffe;

function fail(path: string, expected: string, value: unknown): never {
  throw new InvalidMessageError(`${path}: expected ${expected}, received ${describe(value)}`);
}

/** A plain map as MessagePack decodes one; class instances (msgpackr extension results) are refused. */
function isRecord(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

const integer =
  (min: number, max: number): Check =>
  (v, path) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      fail(path, `an integer from ${min} to ${max}`, v);
    }
  };

const seq = integer(0, Number.MAX_SAFE_INTEGER);
const u32 = integer(0, MAX_U32);
const time = integer(0, Number.MAX_SAFE_INTEGER);

const pattern =
  (test: (v: unknown) => boolean, expected: string): Check =>
  (v, path) => {
    if (!test(v)) fail(path, expected, v);
  };

const ns = pattern(isNamespace, 'a namespace name');
const generation = pattern(isGeneration, 'a generation id (32 hex digits)');
const checksum = pattern(isChecksum, 'a checksum (16 hex digits)');
const sha256 = pattern(isSha256, 'a sha256 (64 hex digits)');
const blobId = pattern(isBlobId, 'a blob id');

const nullable =
  (check: Check): Check =>
  (v, path, ctx) => {
    if (v !== null) check(v, path, ctx);
  };

const bool: Check = (v, path) => {
  if (typeof v !== 'boolean') fail(path, 'a boolean', v);
};

const text: Check = (v, path, ctx) => {
  if (typeof v !== 'string' || v.length > ctx.limits.maxStringLength) {
    fail(path, `a string of at most ${ctx.limits.maxStringLength} characters`, v);
  }
};

const oneOf =
  (...values: readonly string[]): Check =>
  (v, path) => {
    if (typeof v !== 'string' || !values.includes(v)) fail(path, `one of ${values.join(', ')}`, v);
  };

const chunkData: Check = (v, path, ctx) => {
  if (!(v instanceof Uint8Array) || v.length > ctx.limits.maxChunkBytes) {
    fail(path, `bytes of at most ${ctx.limits.maxChunkBytes}`, v);
  }
};

const arrayOf =
  (item: Check, max: (l: ProtocolLimits) => number, min = 0): Check =>
  (v, path, ctx) => {
    const limit = max(ctx.limits);
    if (!Array.isArray(v) || v.length < min || v.length > limit) {
      fail(path, `an array of ${min} to ${limit} items`, v);
    }
    for (let i = 0; i < v.length; i++) item(v[i], `${path}[${i}]`, ctx);
  };

const object =
  (shape: Shape): Check =>
  (v, path, ctx) => {
    if (!isRecord(v)) fail(path, 'a map', v);
    checkShape(v, shape, path, ctx);
  };

function checkShape(v: Record<string, unknown>, shape: Shape, path: string, ctx: Ctx): void {
  for (const key of Object.keys(v)) {
    if (!(key in shape)) throw new InvalidMessageError(`${path}: unexpected field ${JSON.stringify(key)}`);
  }
  for (const [key, check] of Object.entries(shape)) {
    if (!(key in v)) throw new InvalidMessageError(`${path}.${key}: required field is missing`);
    check(v[key], `${path}.${key}`, ctx);
  }
}

const page: Check = (v, path, ctx) => {
  if (!isRecord(v)) fail(path, 'a page map', v);
  checkShape(v, { pgno: integer(1, MAX_PGNO), data: () => {} }, path, ctx);
  const data = v['data'];
  if (!(data instanceof Uint8Array) || !isValidPageSize(data.length)) {
    fail(`${path}.data`, 'a page image whose length is a power of two from 512 to 65536', data);
  }
  if (ctx.pageSize === 0) ctx.pageSize = data.length;
  else if (data.length !== ctx.pageSize) {
    fail(`${path}.data`, `a page of ${ctx.pageSize} bytes like the rest of the message`, data);
  }
  if (++ctx.pages > ctx.limits.maxPagesPerMessage) {
    throw new InvalidMessageError(`${path}: more than ${ctx.limits.maxPagesPerMessage} pages in one message`);
  }
};

const pages = arrayOf(page, (l) => l.maxPagesPerMessage);

/** Pages are unique and none lies beyond commitSize (WAL commits never write past nTruncate). */
function checkPagesFit(list: readonly { pgno: number }[], commitSize: number, path: string): void {
  const seen = new Set<number>();
  for (let i = 0; i < list.length; i++) {
    const pgno = list[i]!.pgno;
    if (pgno > commitSize) fail(`${path}.pages[${i}].pgno`, `a page number at most commitSize ${commitSize}`, pgno);
    if (seen.has(pgno)) fail(`${path}.pages[${i}].pgno`, 'a page number not repeated within the seq', pgno);
    seen.add(pgno);
  }
}

const TXN_SHAPE: Shape = {
  seq: integer(1, Number.MAX_SAFE_INTEGER),
  commitSize: integer(1, MAX_PGNO),
  checksum,
  commitTime: time,
  pages,
};

const txn: Check = (v, path, ctx) => {
  object(TXN_SHAPE)(v, path, ctx);
  const t = v as { commitSize: number; pages: { pgno: number }[] };
  checkPagesFit(t.pages, t.commitSize, path);
};

const streamHead = { ns, generation, seq: integer(1, Number.MAX_SAFE_INTEGER) } as const;
/** Blob messages may name seq 0: the bootstrap copy of a snapshot taken at a generation's base. */
const blobHead = { ns, generation, seq } as const;

interface Schema {
  readonly shape: Shape;
  readonly after?: (msg: Record<string, unknown>, path: string) => void;
}

const SCHEMAS: ReadonlyMap<number, Schema> = new Map<number, Schema>([
  [
    MessageType.HELLO,
    {
      shape: {
        type: u32,
        minVersion: integer(1, 65535),
        maxVersion: integer(1, 65535),
        replicaId: text,
        namespaces: arrayOf(
          object({ ns, generation: nullable(generation), appliedSeq: seq, durableSeq: seq, checksum: nullable(checksum) }),
          (l) => l.maxNamespaces,
        ),
      },
      after: (m, path) => {
        if ((m['minVersion'] as number) > (m['maxVersion'] as number)) {
          fail(`${path}.minVersion`, `at most maxVersion ${String(m['maxVersion'])}`, m['minVersion']);
        }
        const list = m['namespaces'] as { durableSeq: number; appliedSeq: number; generation: string | null; checksum: string | null }[];
        list.forEach((p, i) => {
          if (p.durableSeq > p.appliedSeq) {
            fail(`${path}.namespaces[${i}].durableSeq`, `at most appliedSeq ${p.appliedSeq}`, p.durableSeq);
          }
          if ((p.generation === null) !== (p.checksum === null)) {
            fail(`${path}.namespaces[${i}].checksum`, 'null exactly when generation is null', p.checksum);
          }
        });
      },
    },
  ],
  [
    MessageType.WELCOME,
    {
      shape: {
        type: u32,
        version: integer(1, 65535),
        primaryId: text,
        namespaces: arrayOf(
          object({ ns, generation, headSeq: seq, mode: oneOf('stream', 'snapshot'), reason: text }),
          (l) => l.maxNamespaces,
        ),
      },
    },
  ],
  [
    MessageType.TXN,
    {
      shape: { type: u32, ns, generation, txns: arrayOf(txn, (l) => l.maxTxnsPerMessage, 1) },
      after: (m, path) => {
        const txns = m['txns'] as { seq: number }[];
        for (let i = 1; i < txns.length; i++) {
          if (txns[i]!.seq <= txns[i - 1]!.seq) {
            fail(`${path}.txns[${i}].seq`, `a seq above ${txns[i - 1]!.seq}`, txns[i]!.seq);
          }
        }
      },
    },
  ],
  [
    MessageType.TXN_PART,
    {
      shape: {
        type: u32,
        ...streamHead,
        part: integer(0, MAX_U32 - 1),
        partCount: integer(2, MAX_U32),
        commitSize: integer(1, MAX_PGNO),
        checksum,
        commitTime: time,
        pages,
      },
      after: (m, path) => {
        if ((m['part'] as number) >= (m['partCount'] as number)) {
          fail(`${path}.part`, `below partCount ${String(m['partCount'])}`, m['part']);
        }
        checkPagesFit(m['pages'] as { pgno: number }[], m['commitSize'] as number, path);
      },
    },
  ],
  [
    MessageType.BLOB_BEGIN,
    { shape: { type: u32, ...blobHead, blobId, size: integer(0, Number.MAX_SAFE_INTEGER), sha256 } },
  ],
  [
    MessageType.BLOB_CHUNK,
    {
      shape: { type: u32, ...blobHead, blobId, offset: integer(0, Number.MAX_SAFE_INTEGER), data: chunkData, crc: u32 },
    },
  ],
  [MessageType.BLOB_END, { shape: { type: u32, ...blobHead, blobId } }],
  [MessageType.BLOB_DELETE, { shape: { type: u32, ...blobHead, blobId } }],
  [MessageType.BLOB_GONE, { shape: { type: u32, ...blobHead, blobId, reason: text } }],
  [
    MessageType.BLOB_ACK,
    {
      shape: {
        type: u32,
        ...blobHead,
        blobId,
        bytes: integer(0, Number.MAX_SAFE_INTEGER),
        outcome: oneOf('progress', 'saved', 'present', 'failed'),
      },
    },
  ],
  [MessageType.STREAM_MARK, { shape: { type: u32, ns, generation, seq } }],
  [
    MessageType.SNAPSHOT_BEGIN,
    {
      shape: {
        type: u32,
        ns,
        generation,
        seq,
        pageSize: integer(512, 65536),
        pageCount: integer(0, MAX_PGNO),
        checksum,
        chunkPages: integer(1, MAX_U32),
        chunkCrcs: arrayOf(u32, (l) => l.maxSnapshotChunks),
        fromChunk: u32,
      },
      after: (m, path) => {
        const pageSize = m['pageSize'] as number;
        if (!isValidPageSize(pageSize)) fail(`${path}.pageSize`, 'a power of two from 512 to 65536', pageSize);
        const expected = Math.ceil((m['pageCount'] as number) / (m['chunkPages'] as number));
        const crcs = m['chunkCrcs'] as number[];
        if (crcs.length !== expected) {
          fail(`${path}.chunkCrcs`, `${expected} entries for pageCount / chunkPages`, crcs);
        }
        if ((m['fromChunk'] as number) > expected) fail(`${path}.fromChunk`, `at most ${expected}`, m['fromChunk']);
      },
    },
  ],
  [
    MessageType.SNAPSHOT_CHUNK,
    { shape: { type: u32, ns, generation, seq, index: u32, data: chunkData, crc: u32 } },
  ],
  [MessageType.SNAPSHOT_END, { shape: { type: u32, ns, generation, seq } }],
  [
    MessageType.SNAPSHOT_REQUEST,
    { shape: { type: u32, ns, reason: text, generation: nullable(generation), seq, fromChunk: u32 } },
  ],
  [
    MessageType.ACK,
    {
      shape: { type: u32, ns, generation, appliedSeq: seq, durableSeq: seq },
      after: (m, path) => {
        if ((m['durableSeq'] as number) > (m['appliedSeq'] as number)) {
          fail(`${path}.durableSeq`, `at most appliedSeq ${String(m['appliedSeq'])}`, m['durableSeq']);
        }
      },
    },
  ],
  [MessageType.HEARTBEAT, { shape: { type: u32, sentAt: time } }],
  [
    MessageType.ERROR,
    { shape: { type: u32, code: pattern((v) => typeof v === 'string' && /^WALWIRE_ERR[A-Z0-9_]{0,60}$/.test(v), 'an error code'), message: text, ns: nullable(ns), fatal: bool } },
  ],
]);

/**
 * Checks a decoded value against the schema of its message type and returns
 * it typed. Throws UnknownMessageTypeError or InvalidMessageError.
 */
export function validateMessage(value: unknown, limits: ProtocolLimits): Message {
  if (!isRecord(value)) fail('message', 'a map', value);
  const type = value['type'];
  if (typeof type !== 'number' || !Number.isInteger(type)) fail('message.type', 'an integer message type', type);
  const schema = SCHEMAS.get(type);
  if (schema === undefined) {
    throw new UnknownMessageTypeError(`message.type: ${type} is not a message type of protocol version 1`);
  }
  const path = messageTypeName(type);
  const ctx: Ctx = { limits, pages: 0, pageSize: 0 };
  checkShape(value, schema.shape, path, ctx);
  schema.after?.(value, path);
  return value as unknown as Message;
}
