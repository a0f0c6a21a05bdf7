/** The two commands as users run them: --help, bad flags, graceful SIGTERM. */
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PRIMARY_FLAGS } from '@walwire/primary';
import { REPLICA_FLAGS } from '@walwire/replica';
import { makeTempDir, replicationUrl, runWriter, spawnCommand, startPrimaryProcess, startReplicaProcess, useHarness } from './harness/index.js';

useHarness();

const cli = (pkg: string): string => fileURLToPath(new URL(`../packages/${pkg}/dist/cli.js`, import.meta.url));

describe('walwire-primary and walwire-replica', () => {
  it.each([
    ['primary', PRIMARY_FLAGS],
    ['replica', REPLICA_FLAGS],
  ] as const)('%s --help lists every flag with its environment variable', async (pkg, flags) => {
    const help = spawnCommand(process.execPath, [cli(pkg), '--help']);
    await help.succeeded();
    const text = help.lines.join('\n');
    for (const f of flags) {
      expect(text).toContain(`--${f.name}`);
      expect(text).toContain(`env ${f.env ?? `WALWIRE_${f.name.toUpperCase().replace(/-/g, '_')}`}`);
    }
  });

  it('bad flags exit with status 2 and a stable error code', async () => {
    const cases: [string, string[], RegExp][] = [
      ['primary', ['--token', 'x'], /^walwire-primary: WALWIRE_ERR_INVALID_OPTION: flag --db/],
      ['primary', ['--token', 'x', '--db', 'Bad Name=/tmp/x.db'], /WALWIRE_ERR_INVALID_NAMESPACE/],
      ['primary', ['--db', 'a=/tmp/a.db'], /WALWIRE_ERR_INVALID_OPTION: flag --token/],
      ['replica', ['--token', 'x', '--namespaces', 'a', '--port', '99999'], /flag --port must be an integer from 0 to 65535, received "99999"/],
      ['replica', ['--token', 'x', '--bogus'], /unknown flag --bogus/],
      ['primary', ['--token', 'x', '--db', 'a=/tmp/a.db', '--send-window-bytes', '1000'], /flag --send-window-bytes must be an integer from 65536 to 17179869184, received "1000"/],
      ['primary', ['--token', 'x', '--db', 'a=/tmp/a.db', '--stall-timeout-ms', '5'], /flag --stall-timeout-ms must be an integer from 10 to 3600000, received "5"/],
    ];
    for (const [pkg, args, pattern] of cases) {
      const child = spawnCommand(process.execPath, [cli(pkg), ...args], { env: { WALWIRE_TOKEN: '' } });
      const status = await child.exited;
      expect(status.code).toBe(2);
      expect(child.stderr.join('\n')).toMatch(pattern);
    }
  });

  it('SIGTERM shuts both daemons down gracefully (exit 0)', async () => {
    const dir = makeTempDir();
    const db = join(dir, 'app.db');
    await runWriter({ db }, { mode: 'load', txns: 5, rowsPerTxn: 1, payloadBytes: 10, ratePerSec: 0 });
    const primary = await startPrimaryProcess({ dataDir: join(dir, 'p'), dbs: { app: db } });
    const replica = await startReplicaProcess({ dataDir: join(dir, 'r'), url: replicationUrl(primary.port), namespaces: ['app'] });
    for (const d of [replica, primary]) {
      const status = await d.child.terminate();
      expect(status.code).toBe(0);
      expect(d.child.lines.at(-1)).toContain('"msg":"stopped"');
    }
  });
});
