/** parseRange: single byte ranges against a blob size (RFC 9110 §14.1.2); the rest is ignored. */
import { describe, expect, it } from 'vitest';
import { parseRange } from '@walwire/runtime';

describe('parseRange', () => {
  it('parses first-last, open-ended and suffix ranges, clamped to the blob', () => {
    expect(parseRange('bytes=0-99', 1000)).toEqual({ start: 0, end: 99 });
    expect(parseRange('bytes=990-', 1000)).toEqual({ start: 990, end: 999 });
    expect(parseRange('bytes=-10', 1000)).toEqual({ start: 990, end: 999 });
    expect(parseRange('bytes=-5000', 1000)).toEqual({ start: 0, end: 999 });
    expect(parseRange('bytes=500-5000', 1000)).toEqual({ start: 500, end: 999 });
    expect(parseRange('Bytes = 1 - 1', 1000)).toEqual({ start: 1, end: 1 });
  });

  it('is unsatisfiable past the end, for a zero suffix, and for any range of an empty blob', () => {
    expect(parseRange('bytes=1000-', 1000)).toBe('unsatisfiable');
    expect(parseRange('bytes=2000-3000', 1000)).toBe('unsatisfiable');
    expect(parseRange('bytes=-0', 1000)).toBe('unsatisfiable');
    expect(parseRange('bytes=0-', 0)).toBe('unsatisfiable');
    expect(parseRange('bytes=-1', 0)).toBe('unsatisfiable');
  });

  it('ignores no header, other units, several ranges and malformed ones (the whole blob is served)', () => {
    for (const h of [undefined, 'items=0-1', 'bytes=0-1,4-5', 'bytes=5-1', 'bytes=-', 'bytes=a-b', 'bytes 0-1']) {
      expect(parseRange(h, 1000), String(h)).toBeUndefined();
    }
  });
});
