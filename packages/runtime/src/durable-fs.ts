/**
 * Durable file operations (invariant 5: every file appears whole or not at
 * all). The sequence for a new file is: write a temp file in the same
 * directory, fsync it, rename it over the target, fsync the directory.
 *
 * Crash between any two steps:
 * - before the rename: only the temp file exists; the target is untouched and
 *   `removeStaleTemps` deletes the temp at the next start;
 * - after the rename, before the directory fsync: the target holds either the
 *   old or the new content, both whole (rename is atomic, POSIX rename(2));
 *   the directory fsync makes the new name survive power loss.
 *
 * Never use these on a SQLite database file or its -shm in a daemon process:
 * closing any descriptor on those drops the process's POSIX locks (design.md).
 */
import { randomBytes } from 'node:crypto';
import { constants, promises as fsp, closeSync, fsyncSync, openSync, readdirSync, unlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** Suffix of temp files; anything ending in it is garbage after a crash. */
export const TEMP_SUFFIX = '.tmp';

export function tempPathFor(target: string): string {
  return join(dirname(target), `.${basename(target)}.${randomBytes(6).toString('hex')}${TEMP_SUFFIX}`);
}

/** fsync a directory so that renames and unlinks in it are durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await fsp.open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export function fsyncDirSync(dir: string): void {
  const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes `data` to `target` atomically and durably (temp, fsync, rename, dir fsync). */
export async function writeFileDurable(target: string, data: Uint8Array | string): Promise<void> {
  const temp = tempPathFor(target);
  const handle = await fsp.open(temp, 'wx', 0o644);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } catch (err) {
    await handle.close();
    await fsp.rm(temp, { force: true });
    throw err;
  }
  await handle.close();
  await fsp.rename(temp, target);
  await fsyncDir(dirname(target));
}

/** Removes a file durably (unlink, dir fsync); absent files are fine. */
export async function removeDurable(target: string): Promise<void> {
  await fsp.rm(target, { force: true });
  await fsyncDir(dirname(target));
}

/** Deletes temp files a crash left behind in `dir`. Returns how many. */
export function removeStaleTemps(dir: string): number {
  let removed = 0;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return 0;
  }
  for (const name of names) {
    if (name.startsWith('.') && name.endsWith(TEMP_SUFFIX)) {
      unlinkSync(join(dir, name));
      removed++;
    }
  }
  return removed;
}
