/**
 * The message envelope and its codec.
 *
 * Envelope (one WebSocket binary frame, RFC 6455 §5.6):
 *
 *     +--------------------------+------------------------+
 *     | MessagePack map (body)   | CRC-32 of body, u32 BE |
 *     +--------------------------+------------------------+
 *
 * The CRC is checked before the body is parsed, so a flipped byte anywhere in
 * transit is reported as WALWIRE_ERR_FRAME_CHECKSUM and never reaches the
 * decoder (invariant 4: checked before the bytes are used). Decoding then
 * enforces the schema (validate.ts). For a chunk built by chunkFrame the CRC
 * is computed in three pieces around the content and combined, which gives
 * the content's own CRC-32 from the same single pass (chunkContentCrc).
 *
 * MessagePack settings are fixed and carry no state between messages:
 * records and bundled strings are off, so one Packr serves every connection
 * and a frame decodes the same no matter what came before it.
 */
import { Packr } from 'msgpackr';
import { crc32, crc32Combine } from './crc.js';
import { DecodeError, FrameChecksumError, MessageTooLargeError } from './errors.js';
import { type BlobChunkMessage, type Message, MessageType, type SnapshotChunkMessage, messageTypeName } from './messages.js';
import { DEFAULT_PROTOCOL_LIMITS, type ProtocolLimits } from './options.js';
import { validateMessage } from './validate.js';

/** Bytes the envelope adds after the body. */
export const ENVELOPE_TRAILER_BYTES = 4;

const packr = new Packr({
  useRecords: false,
  bundleStrings: false,
  moreTypes: false,
  structuredClone: false,
  mapsAsObjects: true,
  variableMapSize: true,
  int64AsType: 'number',
});

/**
 * The buffer encodeMessage packs bodies into before sealing a copy. Left to
 * itself, msgpackr packs each value after the previous one in a shared
 * buffer and replaces that buffer with one four times the value's size when
 * it runs out: with 1 MiB TXN messages, a new 4 MiB buffer every few
 * messages. Freeing those raised glibc's mmap threshold past every frame
 * and record size, so all of them came from the heap, which kept the
 * freed memory resident. Packing from the start of one kept buffer
 * allocates nothing; it grows (by adopting msgpackr's larger buffer) up to
 * MAX_SCRATCH_BYTES and is otherwise left as it is.
 */
let scratch: Buffer = Buffer.allocUnsafeSlow(256 * 1024);
const MAX_SCRATCH_BYTES = 32 * 1024 * 1024;

/**
 * Packs `value` into the scratch buffer. The result is a view that the next
 * pack overwrites: copy it before packing anything else.
 */
function packScratch(value: unknown): Buffer {
  packr.useBuffer(scratch);
  try {
    const body = packr.pack(value);
    if (body.buffer !== scratch.buffer && body.buffer.byteLength <= MAX_SCRATCH_BYTES) {
      scratch = Buffer.from(body.buffer, 0, body.buffer.byteLength);
    }
    return body;
  } finally {
    // msgpackr's buffer state is shared by every Packr in the process (an
    // embedding application's too): at its end, the next pack elsewhere
    // starts a buffer of its own instead of writing into this one.
    packr.position = Number.MAX_SAFE_INTEGER;
  }
}

/** Encodes the body without validation or envelope; exposed for tests and fuzzing. */
export function encodeBody(value: unknown): Buffer {
  return Buffer.from(packScratch(value));
}

/**
 * Memory for a frame of `bytes` bytes: a buffer at least that long (the
 * frame is built at its start), or undefined for new memory.
 */
export type FrameMemory = (bytes: number) => Buffer | undefined;

/** Wraps an already-encoded body in the envelope. */
export function seal(body: Uint8Array, memory?: FrameMemory): Buffer {
  const bytes = body.length + ENVELOPE_TRAILER_BYTES;
  const into = memory?.(bytes);
  const frame = into !== undefined && into.length >= bytes ? into.subarray(0, bytes) : Buffer.allocUnsafe(bytes);
  frame.set(body, 0);
  frame.writeUInt32BE(crc32(body), body.length);
  return frame;
}

/**
 * Encodes a message into one frame. Throws MessageTooLargeError when the
 * frame would exceed `limits.maxMessageBytes`: the sender must split first.
 *
 * With `memory`, a sender can build frames in memory it reuses once a frame
 * is flushed; the frame is then a view of the buffer `memory` returned.
 */
export function encodeMessage(message: Message, limits: ProtocolLimits = DEFAULT_PROTOCOL_LIMITS, memory?: FrameMemory): Buffer {
  const frame = seal(packScratch(message), memory);
  if (frame.length > limits.maxMessageBytes) {
    throw new MessageTooLargeError(
      `${messageTypeName(message.type)} encodes to ${frame.length} bytes, above maxMessageBytes ${limits.maxMessageBytes}`,
    );
  }
  return frame;
}

/** A BLOB_CHUNK or SNAPSHOT_CHUNK frame under construction: see chunkFrame. */
export interface DataFrameBuilder {
  /** The chunk's content: `length` bytes inside the frame, to be filled by the caller. */
  readonly data: Buffer;
  /** The memory the frame is built in: `into` when it was large enough, else a new buffer. */
  readonly buffer: Buffer;
  /** Appends `crc` (which must be crc32(data)) and the envelope; returns the finished frame. */
  seal(dataCrc: number): Buffer;
}

const DATA_KEY = Buffer.from([0xa4, 0x64, 0x61, 0x74, 0x61]); // fixstr "data"
const CRC_KEY = Buffer.from([0xa3, 0x63, 0x72, 0x63]); // fixstr "crc"

/** The fields of a chunk message other than its content and the content's CRC. */
export type ChunkHead = Omit<BlobChunkMessage, 'data' | 'crc'> | Omit<SnapshotChunkMessage, 'data' | 'crc'>;

/**
 * Builds a BLOB_CHUNK or SNAPSHOT_CHUNK frame around its content in place,
 * for a sender that reads the content straight into the frame: no copy of
 * the content (the generic path packs it, then seals a copy of the body),
 * and its bytes are read by CRC-32 once.
 * The envelope CRC is combined from the CRC of the small head, the
 * content's own CRC (the message's `crc` field) and the tail, so the frame
 * is byte-for-byte a valid envelope and decodes to the same message as
 * encodeMessage would give; only the MessagePack layout differs (the keys
 * data and crc come last, and data always has a bin 32 header). Throws
 * MessageTooLargeError like encodeMessage.
 *
 * With `into`, the frame is built in that buffer when it is large enough,
 * so a sender can reuse frame memory once a frame is flushed (`buffer` says
 * which memory was used).
 */
export function chunkFrame(head: ChunkHead, length: number, limits: ProtocolLimits = DEFAULT_PROTOCOL_LIMITS, into?: Buffer): DataFrameBuilder {
  const packed = packScratch(head); // copied below before any other pack
  const keys = Object.keys(head).length;
  if (packed[0] !== (0x80 | keys) || keys + 2 > 15) throw new Error(`chunkFrame: head of ${keys} keys did not pack as a small map`);
  const prefix = packed.length + DATA_KEY.length + 5;
  // Tail: "crc" and a uint of at most 5 bytes; then the 4-byte envelope CRC.
  const capacity = prefix + length + CRC_KEY.length + 5 + ENVELOPE_TRAILER_BYTES;
  if (prefix + length + CRC_KEY.length + 1 + ENVELOPE_TRAILER_BYTES > limits.maxMessageBytes) {
    throw new MessageTooLargeError(`${messageTypeName(head.type)} of ${length} content bytes encodes to more than maxMessageBytes ${limits.maxMessageBytes}`);
  }
  const frame = into !== undefined && into.length >= capacity ? into : Buffer.allocUnsafe(capacity);
  packed.copy(frame, 0);
  frame[0] = 0x80 | (keys + 2);
  DATA_KEY.copy(frame, packed.length);
  frame[prefix - 5] = 0xc6; // bin 32
  frame.writeUInt32BE(length, prefix - 4);
  const data = frame.subarray(prefix, prefix + length);
  return {
    data,
    buffer: frame,
    seal(dataCrc: number): Buffer {
      let at = prefix + length;
      at += CRC_KEY.copy(frame, at);
      at += packScratch(dataCrc >>> 0).copy(frame, at);
      const bodyCrc = crc32(frame.subarray(prefix + length, at), crc32Combine(crc32(frame.subarray(0, prefix)), dataCrc, length));
      frame.writeUInt32BE(bodyCrc, at);
      at += ENVELOPE_TRAILER_BYTES;
      if (at > limits.maxMessageBytes) throw new MessageTooLargeError(`${messageTypeName(head.type)} encodes to ${at} bytes, above maxMessageBytes ${limits.maxMessageBytes}`);
      return frame.subarray(0, at);
    },
  };
}

/**
 * Decodes and validates one frame. Byte fields of the result are views into
 * `frame`; copy them if the frame's memory is reused.
 *
 * Throws, all ProtocolError: MessageTooLargeError, DecodeError,
 * FrameChecksumError, UnknownMessageTypeError, InvalidMessageError.
 */
export function decodeMessage(frame: Uint8Array, limits: ProtocolLimits = DEFAULT_PROTOCOL_LIMITS): Message {
  if (frame.length > limits.maxMessageBytes) {
    throw new MessageTooLargeError(`frame of ${frame.length} bytes is above maxMessageBytes ${limits.maxMessageBytes}`);
  }
  if (frame.length <= ENVELOPE_TRAILER_BYTES) {
    throw new DecodeError(`frame of ${frame.length} bytes is shorter than the smallest envelope`);
  }
  const bodyLength = frame.length - ENVELOPE_TRAILER_BYTES;
  const body = frame.subarray(0, bodyLength);
  const view = new DataView(frame.buffer, frame.byteOffset, frame.length);
  const expected = view.getUint32(bodyLength, false);
  const content = chunkContentAt(body);
  let actual: number;
  let contentCrc = 0;
  if (content === null) {
    actual = crc32(body);
  } else {
    // Same value as crc32(body) for any split point, so a wrong guess (a
    // damaged length field, a look-alike byte pattern) cannot let damage
    // through; a right guess also yields the content's own CRC-32 for free.
    const end = content.start + content.length;
    contentCrc = crc32(body.subarray(content.start, end));
    actual = crc32(body.subarray(end), crc32Combine(crc32(body.subarray(0, content.start)), contentCrc, content.length));
  }
  if (actual !== expected) {
    throw new FrameChecksumError(
      `frame CRC-32 mismatch: trailer says ${hex32(expected)}, ${bodyLength} body bytes hash to ${hex32(actual)}`,
    );
  }
  const message = validateMessage(decodeBody(body), limits);
  if (
    content !== null &&
    (message.type === MessageType.BLOB_CHUNK || message.type === MessageType.SNAPSHOT_CHUNK) &&
    message.data.byteOffset === body.byteOffset + content.start &&
    message.data.length === content.length
  ) {
    contentCrcs.set(message.data, contentCrc);
  }
  return message;
}

/** CRC-32s of chunk contents that decodeMessage computed while checking their envelope. */
const contentCrcs = new WeakMap<Uint8Array, number>();

/**
 * The CRC-32 of a chunk message's content, to compare with its `crc` field.
 * For a message decodeMessage returned from a chunkFrame-built frame this is
 * the value it computed while checking the envelope (the content is not
 * read a second time); otherwise it is computed here.
 */
export function chunkContentCrc(message: BlobChunkMessage | SnapshotChunkMessage): number {
  return contentCrcs.get(message.data) ?? crc32(message.data);
}

/** Bodies smaller than this are CRC'd in one pass: the split saves nothing. */
const SPLIT_MIN_BODY = 4096;
/** How far into the body the "data" key of a chunkFrame layout may start. */
const SPLIT_SCAN_BYTES = 512;

/**
 * Where a body laid out by chunkFrame keeps its content, found from the
 * layout alone (no MessagePack parsing before the CRC check): the "data" key
 * with a bin 32 header within the first bytes, and exactly the "crc" key and
 * one MessagePack uint (1 to 5 bytes) after the content. Null when the body
 * has no such shape.
 */
function chunkContentAt(body: Uint8Array): { start: number; length: number } | null {
  if (body.length < SPLIT_MIN_BODY) return null;
  const scanEnd = Math.min(SPLIT_SCAN_BYTES, body.length - 10);
  for (let i = 1; i < scanEnd; i++) {
    if (body[i] !== 0xa4 || body[i + 1] !== 0x64 || body[i + 2] !== 0x61 || body[i + 3] !== 0x74 || body[i + 4] !== 0x61 || body[i + 5] !== 0xc6) continue;
    const length = ((body[i + 6]! << 24) | (body[i + 7]! << 16) | (body[i + 8]! << 8) | body[i + 9]!) >>> 0;
    const start = i + 10;
    const end = start + length;
    const tail = body.length - end;
    if (tail < CRC_KEY.length + 1 || tail > CRC_KEY.length + 5) continue;
    if (body[end] !== 0xa3 || body[end + 1] !== 0x63 || body[end + 2] !== 0x72 || body[end + 3] !== 0x63) continue;
    return { start, length };
  }
  return null;
}

/** MessagePack-decodes a body, mapping every decoder failure to DecodeError. */
export function decodeBody(body: Uint8Array): unknown {
  try {
    return packr.unpack(body);
  } catch (err) {
    throw new DecodeError(`body is not a single MessagePack value: ${(err as Error).message.slice(0, 120)}`, {
      cause: err,
    });
  }
}

function hex32(n: number): string {
  return n.toString(16).padStart(8, '0');
}
