import { crc32 as zlibCrc32 } from 'node:zlib';

/**
 * CRC-32 (IEEE 802.3 polynomial, as zlib and PNG use it). Pure computation
 * delegated to zlib's native implementation (Node ≥ 20.15); `seed` continues
 * a running CRC over several buffers.
 */
export function crc32(data: Uint8Array, seed = 0): number {
  return zlibCrc32(data, seed);
}

/* CRC-32 combination (zlib's crc32_combine, the x^(2^n) mod P method). */
const POLY = 0xedb88320;

/** a × b modulo the CRC polynomial, both in reflected bit order. */
function multModP(a: number, b: number): number {
  let m = 0x80000000;
  let p = 0;
  for (;;) {
    if ((a & m) !== 0) {
      p ^= b;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    b = (b & 1) !== 0 ? (b >>> 1) ^ POLY : b >>> 1;
  }
  return p >>> 0;
}

/** X2N[k] = x^(2^k) mod P. */
const X2N: number[] = (() => {
  const t: number[] = [];
  let p = 0x40000000; // x^1
  t.push(p);
  for (let k = 1; k < 32; k++) t.push((p = multModP(p, p)));
  return t;
})();

/** x^(n × 2^k) mod P. */
function x2nModP(n: number, k: number): number {
  let p = 0x80000000; // x^0 = 1
  while (n > 0) {
    if (n % 2 === 1) p = multModP(X2N[k & 31]!, p);
    n = Math.floor(n / 2);
    k++;
  }
  return p;
}

/**
 * The CRC-32 of A followed by B, from crc32(A), crc32(B) and B's length,
 * without reading either: a frame's CRC can reuse the CRC already computed
 * over its large byte field.
 */
export function crc32Combine(crcA: number, crcB: number, lengthB: number): number {
  return (multModP(x2nModP(lengthB, 3), crcA >>> 0) ^ (crcB >>> 0)) >>> 0;
}
