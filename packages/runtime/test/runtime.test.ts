import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { armFailpoint, disarmAllFailpoints, failpoint, failpointAsync, removeStaleTemps, writeFileDurable } from '@walwire/runtime';

afterEach(() => disarmAllFailpoints());

describe('failpoints', () => {
  it('are inert until armed', () => {
    expect(() => failpoint('test.never')).not.toThrow();
  });

  it('throw FailpointError when armed with throw', () => {
    armFailpoint('test.a', 'throw');
    expect(() => failpoint('test.a')).toThrow(expect.objectContaining({ code: 'WALWIRE_ERR_FAILPOINT', message: 'failpoint test.a fired (hit 1)' }));
    expect(() => failpoint('test.other')).not.toThrow();
  });

  it('@N fires only on the Nth hit; *N on the first N', () => {
    armFailpoint('test.at', 'throw@3');
    const at = [1, 2, 3, 4].map(() => {
      try {
        failpoint('test.at');
        return false;
      } catch {
        return true;
      }
    });
    expect(at).toEqual([false, false, true, false]);
    armFailpoint('test.first', 'throw*2');
    const first = [1, 2, 3].map(() => {
      try {
        failpoint('test.first');
        return false;
      } catch {
        return true;
      }
    });
    expect(first).toEqual([true, true, false]);
  });

  it('delay waits asynchronously; off disarms', async () => {
    armFailpoint('test.delay', 'delay(30)');
    const t = performance.now();
    await failpointAsync('test.delay');
    expect(performance.now() - t).toBeGreaterThanOrEqual(25);
    armFailpoint('test.delay', 'off');
    const u = performance.now();
    await failpointAsync('test.delay');
    expect(performance.now() - u).toBeLessThan(25);
  });

  it('refuses a malformed spec with WALWIRE_ERR_INVALID_OPTION naming the value', () => {
    expect(() => armFailpoint('x', 'explode')).toThrow(expect.objectContaining({ code: 'WALWIRE_ERR_INVALID_OPTION', message: expect.stringContaining('"explode"') }));
  });

  it('errno(CODE) throws an fs-shaped error carrying that errno, with the usual modifiers, sync and async', async () => {
    armFailpoint('test.errno', 'errno(EIO)*2');
    let caught: unknown;
    try {
      failpoint('test.errno');
    } catch (err) {
      caught = err;
    }
    // What retry logic keys on: `code` (and errno/syscall, as fs errors carry them); not a FailpointError.
    expect(caught).toBeInstanceOf(Error);
    expect(caught).toMatchObject({ code: 'EIO', errno: -constants.errno.EIO, syscall: 'failpoint', message: 'EIO: failpoint test.errno fired (hit 1)' });
    expect((caught as Error).name).toBe('Error');
    await expect(failpointAsync('test.errno')).rejects.toMatchObject({ code: 'EIO', message: 'EIO: failpoint test.errno fired (hit 2)' });
    await expect(failpointAsync('test.errno')).resolves.toBeUndefined();
    armFailpoint('test.errno', 'errno(EAGAIN)@2');
    expect(() => failpoint('test.errno')).not.toThrow();
    expect(() => failpoint('test.errno')).toThrow(expect.objectContaining({ code: 'EAGAIN', errno: -constants.errno.EAGAIN }));
    expect(() => failpoint('test.errno')).not.toThrow();
  });

  it('refuses errno() with a name that is not an errno of this platform', () => {
    expect(() => armFailpoint('x', 'errno(EWHATEVER)')).toThrow(expect.objectContaining({ code: 'WALWIRE_ERR_INVALID_OPTION', message: expect.stringContaining('"EWHATEVER" is not an errno name') }));
    expect(() => armFailpoint('x', 'errno(eio)')).toThrow(expect.objectContaining({ code: 'WALWIRE_ERR_INVALID_OPTION' }));
    expect(() => armFailpoint('x', 'errno()')).toThrow(expect.objectContaining({ code: 'WALWIRE_ERR_INVALID_OPTION' }));
  });
});

describe('durable file writes', () => {
  let dir = '';
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('replace the target whole and leave no temp file', async () => {
    dir = mkdtempSync(join(tmpdir(), 'walwire-rt-'));
    const target = join(dir, 'cursor.json');
    await writeFileDurable(target, 'one');
    await writeFileDurable(target, 'two');
    expect(readFileSync(target, 'utf8')).toBe('two');
    expect(readdirSync(dir)).toEqual(['cursor.json']);
  });

  it('removeStaleTemps deletes what a crash before rename leaves', () => {
    dir = mkdtempSync(join(tmpdir(), 'walwire-rt-'));
    writeFileSync(join(dir, '.cursor.json.abc123.tmp'), 'partial');
    writeFileSync(join(dir, 'keep.json'), 'x');
    expect(removeStaleTemps(dir)).toBe(1);
    expect(existsSync(join(dir, 'keep.json'))).toBe(true);
    expect(readdirSync(dir)).toEqual(['keep.json']);
  });
});

describe('cli flags', async () => {
  const { parseFlags, formatHelp, tokenMatches, bearerToken, Backoff } = await import('@walwire/runtime');
  const specs = [
    { name: 'data-dir', type: 'string', description: 'Where state lives.', default: './data' },
    { name: 'port', type: 'integer', description: 'Listen port.', default: 7400, min: 0, max: 65535 },
    { name: 'tls', type: 'boolean', description: 'Use TLS.', default: false },
    { name: 'namespace', type: 'list', description: 'Namespaces.', default: [] },
  ] as const;

  it('takes flags over environment over defaults, and accumulates lists', () => {
    const { flags, positionals } = parseFlags(specs, ['--port=81', '--namespace', 'a,b', '--namespace=c', 'extra'], { WALWIRE_PORT: '90', WALWIRE_TLS: 'true' });
    expect(flags).toEqual({ 'data-dir': './data', port: 81, tls: true, namespace: ['a', 'b', 'c'] });
    expect(positionals).toEqual(['extra']);
    expect(parseFlags(specs, ['--no-tls'], { WALWIRE_TLS: 'true' }).flags['tls']).toBe(false);
  });

  it('names the flag or variable and the value received', () => {
    expect(() => parseFlags(specs, ['--port', '70000'])).toThrow('flag --port must be an integer from 0 to 65535, received "70000"');
    expect(() => parseFlags(specs, [], { WALWIRE_PORT: 'x' })).toThrow('environment variable WALWIRE_PORT must be an integer');
    expect(() => parseFlags(specs, ['--bogus'])).toThrow(expect.objectContaining({ code: 'WALWIRE_ERR_INVALID_OPTION', message: 'unknown flag --bogus; see --help' }));
  });

  it('lists every flag with its variable and default in --help', () => {
    const text = formatHelp('walwire-x [flags]', 'Does x.', specs);
    for (const s of specs) expect(text).toContain(`--${s.name}`);
    expect(text).toContain('env WALWIRE_DATA_DIR; default ./data');
    expect(parseFlags(specs, ['-h']).help).toBe(true);
  });

  it('compares tokens in constant time and parses bearer headers', () => {
    expect(tokenMatches('s3cret', 's3cret')).toBe(true);
    expect(tokenMatches('s3cre', 's3cret')).toBe(false);
    expect(tokenMatches(undefined, 's3cret')).toBe(false);
    expect(bearerToken('Bearer abc')).toBe('abc');
    expect(bearerToken('Basic abc')).toBeUndefined();
  });

  it('backs off exponentially with full jitter, capped', () => {
    const b = new Backoff(100, 1000, () => 0.999);
    expect([b.next(), b.next(), b.next(), b.next(), b.next()]).toEqual([100, 200, 400, 799, 999]);
    b.reset();
    expect(b.next()).toBe(100);
    expect(new Backoff(100, 1000, () => 0).next()).toBe(1);
  });
});
