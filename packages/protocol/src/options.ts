import { InvalidOptionError } from './errors.js';

/**
 * Size limits the codec and validator enforce on every message. Both peers
 * apply them to what they receive; the primary also splits what it sends so
 * that no message exceeds them.
 */
export interface ProtocolLimits {
  /**
   * Largest encoded message, envelope included. Also the `maxPayload` of the
   * WebSocket on both sides.
   * @default 16777216 (16 MiB)
   */
  readonly maxMessageBytes: number;
  /**
   * Largest number of pages in one TXN or TXN_PART message, summed over its
   * transactions.
   * @default 4096
   */
  readonly maxPagesPerMessage: number;
  /**
   * Largest number of transactions in one TXN message.
   * @default 1024
   */
  readonly maxTxnsPerMessage: number;
  /**
   * Largest data field of one BLOB_CHUNK or SNAPSHOT_CHUNK.
   * @default 4194304 (4 MiB)
   */
  readonly maxChunkBytes: number;
  /**
   * Largest number of namespaces in one HELLO or WELCOME.
   * @default 4096
   */
  readonly maxNamespaces: number;
  /**
   * Largest number of chunk entries in one SNAPSHOT_BEGIN manifest.
   * @default 1048576
   */
  readonly maxSnapshotChunks: number;
  /**
   * Longest free-text string (error messages, reasons, replica ids).
   * @default 4096
   */
  readonly maxStringLength: number;
}

export const DEFAULT_PROTOCOL_LIMITS: ProtocolLimits = Object.freeze({
  maxMessageBytes: 16 * 1024 * 1024,
  maxPagesPerMessage: 4096,
  maxTxnsPerMessage: 1024,
  maxChunkBytes: 4 * 1024 * 1024,
  maxNamespaces: 4096,
  maxSnapshotChunks: 1024 * 1024,
  maxStringLength: 4096,
});

/**
 * Asserts that `value` is an integer in [min, max]; the message names the
 * option and the value received, as every option validation in walwire does.
 */
export function checkIntegerOption(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidOptionError(
      `option ${name} must be an integer from ${min} to ${max}, received ${describe(value)}`,
    );
  }
  return value;
}

/** Fills unset limits from the defaults and validates every one. */
export function resolveProtocolLimits(partial: Partial<ProtocolLimits> = {}): ProtocolLimits {
  const merged = { ...DEFAULT_PROTOCOL_LIMITS, ...partial };
  checkIntegerOption('maxMessageBytes', merged.maxMessageBytes, 1024, 1024 * 1024 * 1024);
  checkIntegerOption('maxPagesPerMessage', merged.maxPagesPerMessage, 1, 1 << 20);
  checkIntegerOption('maxTxnsPerMessage', merged.maxTxnsPerMessage, 1, 1 << 20);
  checkIntegerOption('maxChunkBytes', merged.maxChunkBytes, 512, merged.maxMessageBytes);
  checkIntegerOption('maxNamespaces', merged.maxNamespaces, 1, 1 << 20);
  checkIntegerOption('maxSnapshotChunks', merged.maxSnapshotChunks, 1, 1 << 24);
  checkIntegerOption('maxStringLength', merged.maxStringLength, 64, 1 << 20);
  return Object.freeze(merged);
}

/** Short, log-safe rendering of an arbitrary received value. */
export function describe(value: unknown): string {
  if (typeof value === 'string') {
    return JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}…` : value);
  }
  if (typeof value === 'bigint') return `${value}n`;
  if (value instanceof Uint8Array) return `<${value.length} bytes>`;
  if (Array.isArray(value)) return `array(${value.length})`;
  if (value === null) return 'null';
  if (typeof value === 'object') return 'object';
  return String(value);
}
