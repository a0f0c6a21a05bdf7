/**
 * Direct reads of a database file, for the checksum of a whole database
 * image (start-up and new generations).
 *
 * POSIX locks belong to the process, and closing *any* descriptor on the
 * database file drops every SQLite lock this process holds on it (design.md,
 * "Facts verified"). So the daemon opens each database file with `fs` exactly
 * once and never closes that descriptor: it lives as long as the process,
 * shared by every start/stop of a Primary in it. Never add a close here.
 */
import { openSync, read as readCb, realpathSync } from 'node:fs';
import { promisify } from 'node:util';
import { DatabaseChecksum, DatabaseFormatError, lockBytePage } from '@walwire/protocol';

const readAsync = promisify(readCb);

/** Process-wide: real path → read-only descriptor, never closed (see above). */
const descriptors = new Map<string, number>();

/** The process-lifetime read-only descriptor of a database file. */
export function databaseDescriptor(path: string): number {
  const real = realpathSync(path);
  let fd = descriptors.get(real);
  if (fd === undefined) {
    fd = openSync(real, 'r');
    descriptors.set(real, fd);
  }
  return fd;
}

/**
 * Checksums the database image made of the file's pages 1..commitSize with
 * `overlay` (pgno → newest committed WAL page) laid over it.
 *
 * Consistency: the caller holds a read transaction that began when the WAL
 * held exactly the overlaid frames, so no checkpoint can copy a later frame
 * into the file meanwhile. A checkpoint may still copy an earlier frame, but
 * every page such a frame touches is in the overlay, which wins; a torn read
 * of such a page is therefore never used. Pages no frame touches are stable.
 */
export async function checksumDatabaseImage(
  fd: number,
  pageSize: number,
  commitSize: number,
  overlay: ReadonlyMap<number, Uint8Array>,
  /** Receives the image itself, slice by slice (overlay applied), e.g. to write a snapshot image. */
  sink?: (offset: number, data: Uint8Array) => Promise<void>,
): Promise<DatabaseChecksum> {
  const sum = new DatabaseChecksum(Math.max(commitSize, 16));
  const lockPage = lockBytePage(pageSize);
  const chunkPages = Math.max(1, Math.floor((4 * 1024 * 1024) / pageSize));
  const buf = Buffer.allocUnsafe(chunkPages * pageSize);
  for (let first = 1; first <= commitSize; first += chunkPages) {
    const count = Math.min(chunkPages, commitSize - first + 1);
    const { bytesRead } = await readAsync(fd, buf, 0, count * pageSize, (first - 1) * pageSize);
    for (let k = 0; k < count; k++) {
      const pgno = first + k;
      if (pgno === lockPage) continue;
      const page = overlay.get(pgno);
      if (page !== undefined) {
        sum.setPage(pgno, page);
        if (sink) buf.set(page, k * pageSize);
      } else if ((k + 1) * pageSize <= bytesRead) {
        sum.setPage(pgno, buf.subarray(k * pageSize, (k + 1) * pageSize));
      } else {
        throw new DatabaseFormatError(`page ${pgno} is beyond the end of the database file and in no WAL frame (database size ${commitSize} pages)`);
      }
    }
    if (sink) await sink((first - 1) * pageSize, buf.subarray(0, count * pageSize));
  }
  return sum;
}
