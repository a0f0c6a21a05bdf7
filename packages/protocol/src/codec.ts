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
 * decoder (invariant 4). Decoding then enforces the schema (validate.ts).
 *
 * MessagePack settings are fixed and carry no state between messages:
 * records and bundled strings are off, so one Packr serves every connection
 * and a frame decodes the same no matter what came before it.
 */
import { Packr } from 'msgpackr';
import { crc32 } from './crc.js';
import { DecodeError, FrameChecksumError, MessageTooLargeError } from './errors.js';
import { type Message, messageTypeName } from './messages.js';
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

/** Encodes the body without validation or envelope; exposed for tests and fuzzing. */
export function encodeBody(value: unknown): Buffer {
  return packr.pack(value);
}

/** Wraps an already-encoded body in the envelope. */
export function seal(body: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(body.length + ENVELOPE_TRAILER_BYTES);
  frame.set(body, 0);
  frame.writeUInt32BE(crc32(body), body.length);
  return frame;
}

/**
 * Encodes a message into one frame. Throws MessageTooLargeError when the
 * frame would exceed `limits.maxMessageBytes`: the sender must split first.
 */
export function encodeMessage(message: Message, limits: ProtocolLimits = DEFAULT_PROTOCOL_LIMITS): Buffer {
  const frame = seal(packr.pack(message));
  if (frame.length > limits.maxMessageBytes) {
    throw new MessageTooLargeError(
      `${messageTypeName(message.type)} encodes to ${frame.length} bytes, above maxMessageBytes ${limits.maxMessageBytes}`,
    );
  }
  return frame;
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
  const actual = crc32(body);
  if (actual !== expected) {
    throw new FrameChecksumError(
      `frame CRC-32 mismatch: trailer says ${hex32(expected)}, ${bodyLength} body bytes hash to ${hex32(actual)}`,
    );
  }
  return validateMessage(decodeBody(body), limits);
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
