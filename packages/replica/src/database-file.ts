/**
 * The one `fs` descriptor per replica database file, kept for the whole
 * process lifetime.
 *
 * POSIX advisory locks belong to the process, and closing *any* descriptor on
 * a file drops every lock the process holds on it (fcntl(2); design.md,
 * "POSIX locks belong to the process"). SQLite's own connections avoid this
 * among themselves, but they cannot know about descriptors opened with `fs`.
 * So the daemon opens each database file with `fs` exactly once, reads and
 * writes pages through that descriptor (from the apply worker too, since
 * descriptors are per process), and never closes it, not even when the
 * namespace closes: reopening the namespace reuses it.
 *
 * The registry is keyed by the file's (device, inode), so two paths to the
 * same file share one descriptor. A namespace whose database file does not
 * exist yet gets none: when the file first exists (first apply, or a
 * snapshot linked in as the database) its apply worker asks this thread to
 * open it here. A worker must never open it itself: Node closes the
 * descriptors a worker opened when the worker exits.
 */
import { constants, fstatSync, openSync, realpathSync, statSync } from 'node:fs';

const byInode = new Map<string, number>();

function key(dev: number | bigint, ino: number | bigint): string {
  return `${dev}:${ino}`;
}

/**
 * Returns the kept read-write descriptor of the database at `path`, creating
 * the file (empty: a database with no pages) when it does not exist.
 */
export function keptDatabaseFd(path: string): number {
  let existing: number | undefined;
  try {
    const st = statSync(path);
    existing = byInode.get(key(st.dev, st.ino));
  } catch {
    existing = undefined;
  }
  if (existing !== undefined) return existing;
  const fd = openSync(realpathOrSelf(path), constants.O_RDWR | constants.O_CREAT, 0o644);
  const st = fstatSync(fd);
  const k = key(st.dev, st.ino);
  const raced = byInode.get(k);
  if (raced !== undefined) {
    // Cannot happen within one thread; if it ever did, keep both open rather
    // than close one (closing would drop the process's locks on the file).
    return raced;
  }
  byInode.set(k, fd);
  return fd;
}

function realpathOrSelf(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

/** The kept descriptor of the database at `path` if the file exists, or null (see keptDatabaseFd). */
export function keptDatabaseFdIfExists(path: string): number | null {
  try {
    statSync(path);
  } catch {
    return null;
  }
  return keptDatabaseFd(path);
}
