import { describe, expect, it } from 'vitest';
import { DEFAULT_PRIMARY_LIMITS, resolvePrimaryOptions } from '@walwire/primary';
import { hasCode } from '@walwire/protocol';

function error(fn: () => unknown): Error & { code?: string } {
  try {
    fn();
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error('expected an error');
}

describe('resolvePrimaryOptions', () => {
  it('fills defaults', () => {
    const o = resolvePrimaryOptions({ dataDir: '/tmp/x', namespaces: { app: { path: '/tmp/app.db' } } });
    expect(o.checkpointPages).toBe(DEFAULT_PRIMARY_LIMITS.checkpointPages);
    expect(o.namespaces.get('app')).toEqual({ path: '/tmp/app.db', create: true });
  });

  it('names the option and the value received', () => {
    const e = error(() => resolvePrimaryOptions({ dataDir: '/tmp/x', namespaces: {}, checkpointConcurrency: 0 }));
    expect(hasCode(e, 'WALWIRE_ERR_INVALID_OPTION')).toBe(true);
    expect(e.message).toContain('checkpointConcurrency');
    expect(e.message).toContain('received 0');
    const p = error(() => resolvePrimaryOptions({ dataDir: '/tmp/x', namespaces: { a: { path: '' } } }));
    expect(p.message).toContain('namespaces.a.path');
  });

  it('rejects bad namespace names and shared database paths', () => {
    expect(hasCode(error(() => resolvePrimaryOptions({ dataDir: '/x', namespaces: { 'Bad Name': { path: '/a' } } })), 'WALWIRE_ERR_INVALID_NAMESPACE')).toBe(true);
    const e = error(() => resolvePrimaryOptions({ dataDir: '/x', namespaces: { a: { path: '/same.db' }, b: { path: '/same.db' } } }));
    expect(hasCode(e, 'WALWIRE_ERR_INVALID_OPTION')).toBe(true);
  });
});
