import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const created = new Set<string>();

/** A fresh temp directory, removed by `cleanupTempDirs` (or at process exit). */
export function makeTempDir(prefix = 'walwire-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  created.add(dir);
  return dir;
}

/** Removes every directory made by makeTempDir. Set WALWIRE_KEEP_TMP=1 to keep them for debugging. */
export function cleanupTempDirs(): void {
  if (process.env['WALWIRE_KEEP_TMP'] === '1') return;
  for (const dir of created) rmSync(dir, { recursive: true, force: true });
  created.clear();
}

process.on('exit', cleanupTempDirs);
