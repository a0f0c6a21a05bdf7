/**
 * Whole-buffer reads and writes at an offset, for the apply worker's page
 * I/O through kept descriptors (a short read is an error: pages are read
 * only where the file has them).
 */
import { readSync, writeSync, writevSync } from 'node:fs';
import { ApplyFailedError } from '@walwire/protocol';

export function readFully(fd: number, buf: Uint8Array, length: number, position: number): void {
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buf, done, length - done, position + done);
    if (n === 0) throw new ApplyFailedError(`short read at offset ${position + done}`);
    done += n;
  }
}

export function readPage(fd: number, pgno: number, pageSize: number): Uint8Array {
  const buf = new Uint8Array(pageSize);
  readFully(fd, buf, pageSize, (pgno - 1) * pageSize);
  return buf;
}

export function writevFully(fd: number, buffers: Uint8Array[], position: number): number {
  const total = buffers.reduce((n, b) => n + b.length, 0);
  let done = writevSync(fd, buffers, position);
  if (done < total) {
    const rest = Buffer.concat(buffers).subarray(done);
    while (done < total) done += writeSync(fd, rest, done - (total - rest.length), total - done, position + done);
  }
  return total;
}
