/**
 * The chaos soak (test/soak/engine.ts, docs/testing.md). In `npm test` it
 * runs the CI profile: a 90-second fault phase (about two minutes in all)
 * on a fresh random seed, printed first. `npm run soak -- --minutes N
 * [--seed S]` runs it longer or replays a seed through the variables
 * WALWIRE_SOAK_MINUTES (length of the fault phase) and WALWIRE_SOAK_SEED.
 */
import { randomInt } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { useHarness } from './harness/index.js';
import { runSoak } from './soak/engine.js';

useHarness();

const minutes = Number(process.env['WALWIRE_SOAK_MINUTES'] ?? 1.5);
const seed = process.env['WALWIRE_SOAK_SEED'] !== undefined ? Number(process.env['WALWIRE_SOAK_SEED']) : randomInt(2 ** 31);
const faultMs = Math.round(minutes * 60_000);

describe('chaos soak', () => {
  it(`seed ${seed}: faults for ${minutes} min, then every replica converges and nothing committed is lost`, async () => {
    expect(Number.isInteger(seed) && seed >= 0, `WALWIRE_SOAK_SEED must be a non-negative integer, received ${process.env['WALWIRE_SOAK_SEED']}`).toBe(true);
    const report = await runSoak({ seed, faultMs });
    expect(report.violations).toBe(0);
    expect(report.transactions.committed).toBeGreaterThan(0);
    expect(Object.values(report.faults).reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
    // Generous: setup, the fault phase, and convergence on a busy 2-core machine.
  }, faultMs + 10 * 60_000);
});
