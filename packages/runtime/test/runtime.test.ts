import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
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
