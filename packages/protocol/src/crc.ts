import { crc32 as zlibCrc32 } from 'node:zlib';

/**
 * CRC-32 (IEEE 802.3 polynomial, as zlib and PNG use it). Pure computation
 * delegated to zlib's native implementation (Node ≥ 20.15); `seed` continues
 * a running CRC over several buffers.
 */
export function crc32(data: Uint8Array, seed = 0): number {
  return zlibCrc32(data, seed);
}
