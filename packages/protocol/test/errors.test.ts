import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_CLASSES, ProtocolError, RemoteError, WalwireError, errorFromWire, hasCode } from '@walwire/protocol';

const doc = readFileSync(new URL('../../../docs/errors.md', import.meta.url), 'utf8');
const documented = [...doc.matchAll(/^\| `(WALWIRE_ERR_[A-Z0-9_]+)` \| `(\w+)`/gm)].map((m) => [m[1]!, m[2]!] as const);

describe('error hierarchy', () => {
  it('docs/errors.md lists every code exactly once, with its class, and nothing else', () => {
    const codes = documented.map(([code]) => code);
    expect(new Set(codes).size).toBe(codes.length);
    expect([...codes].sort()).toEqual([...ERROR_CLASSES.keys()].sort());
    for (const [code, name] of documented) expect(new (ERROR_CLASSES.get(code)!)('x').name).toBe(name);
  });

  it('every class has a literal name equal to its class name and a WALWIRE_ERR_ code', () => {
    for (const [code, C] of ERROR_CLASSES) {
      const err = new C('boom');
      expect(err).toBeInstanceOf(WalwireError);
      expect(err).toBeInstanceOf(Error);
      expect(err.name).toBe(C.name);
      expect(err.code).toBe(code);
      expect(code).toMatch(/^WALWIRE_ERR_[A-Z_]+$/);
      expect(err.message).toBe('boom');
      expect(String(err.stack)).toContain(C.name);
    }
  });

  it('wire codes rebuild the same class; unknown codes become RemoteError', () => {
    for (const [code, C] of ERROR_CLASSES) {
      const err = errorFromWire(code, 'from peer');
      expect(err).toBeInstanceOf(C);
      expect(hasCode(err, code)).toBe(true);
    }
    const unknown = errorFromWire('WALWIRE_ERR_FROM_THE_FUTURE', 'new');
    expect(unknown).toBeInstanceOf(RemoteError);
    expect(unknown.code).toBe('WALWIRE_ERR_FROM_THE_FUTURE');
  });

  it('protocol failures share the ProtocolError base', () => {
    const protocolCodes = [...ERROR_CLASSES].filter(([, C]) => new C('') instanceof ProtocolError).map(([c]) => c);
    expect(protocolCodes).toEqual(
      expect.arrayContaining(['WALWIRE_ERR_DECODE', 'WALWIRE_ERR_FRAME_CHECKSUM', 'WALWIRE_ERR_INVALID_MESSAGE', 'WALWIRE_ERR_UNSUPPORTED_VERSION']),
    );
    expect(new (ERROR_CLASSES.get('WALWIRE_ERR_WAL_FORMAT')!)('') instanceof ProtocolError).toBe(false);
  });
});
