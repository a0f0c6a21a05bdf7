// npm run soak -- [--minutes N] [--seed S] [--runs K] [--keep]
//
// Runs the chaos soak (test/soak.test.ts, docs/testing.md) through vitest:
// --minutes is the length of the fault phase (default 1.5, the CI profile),
// --seed replays a schedule (default: a fresh random seed per run, printed),
// --runs repeats the soak K times in a row (a new seed each, unless --seed),
// --keep keeps the temp directories (WALWIRE_KEEP_TMP=1).
// Exits non-zero on the first failing run; the seed to replay is in its output.
import { spawnSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const known = new Set(['--minutes', '--seed', '--runs', '--keep']);
for (const a of args) {
  if (a.startsWith('--') && !known.has(a)) {
    console.error(`soak: unknown flag ${a}; use --minutes N, --seed S, --runs K, --keep`);
    process.exit(2);
  }
}
const minutes = Number(flag('minutes', '1.5'));
const runs = Number(flag('runs', '1'));
const fixedSeed = flag('seed', undefined);
if (!(minutes > 0) || !Number.isInteger(runs) || runs < 1 || (fixedSeed !== undefined && !/^\d+$/.test(fixedSeed))) {
  console.error('soak: --minutes must be > 0, --runs a positive integer, --seed a non-negative integer');
  process.exit(2);
}
const root = fileURLToPath(new URL('..', import.meta.url));
const vitest = fileURLToPath(new URL('../node_modules/vitest/vitest.mjs', import.meta.url));
const results = [];
for (let i = 0; i < runs; i++) {
  const seed = fixedSeed ?? String(randomInt(2 ** 31));
  const started = Date.now();
  const r = spawnSync(process.execPath, [vitest, 'run', 'test/soak.test.ts'], {
    cwd: root,
    stdio: 'inherit',
    env: {
      ...process.env,
      WALWIRE_SOAK_SEED: seed,
      WALWIRE_SOAK_MINUTES: String(minutes),
      ...(args.includes('--keep') ? { WALWIRE_KEEP_TMP: '1' } : {}),
    },
  });
  const ok = r.status === 0;
  results.push(`seed ${seed}: ${ok ? 'passed' : 'FAILED'} in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  if (!ok) break;
}
console.log(`\nsoak (${minutes} min fault phase):\n  ${results.join('\n  ')}`);
process.exit(results.every((l) => l.includes('passed')) ? 0 : 1);
