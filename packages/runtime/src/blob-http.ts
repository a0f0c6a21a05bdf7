/**
 * Blob reads over HTTP, the same on both daemons (the replica serves its
 * copies read-only): GET and HEAD of one blob, with a single byte range.
 *
 * The response names the exact content: ETag `"<sha256>"` and
 * x-walwire-sha256. The file is opened by id and content (`<id>~<sha256>`)
 * before the headers go out, so a delete or replacement that races the
 * request cannot mix versions: the open descriptor keeps reading the
 * version the headers describe. Bodies are streamed from the file, never
 * buffered whole.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { InvalidBlobIdError, NotFoundError, RangeNotSatisfiableError, describe, isBlobId } from '@walwire/protocol';
import type { BlobDirectory } from './blob-files.js';
import { sendFailure } from './http.js';

/** An inclusive byte range within a blob. */
export interface ByteRange {
  readonly start: number;
  readonly end: number;
}

/**
 * Parses a Range header against a blob of `size` bytes (RFC 9110 §14.1.2).
 * Returns undefined when the whole blob is to be served: no header, another
 * unit, several ranges (not supported; a server may ignore Range, §14.2) or
 * a malformed one. Returns 'unsatisfiable' when the single range lies
 * outside the blob (a first byte at or past the end, a zero-length suffix,
 * any range of an empty blob).
 */
export function parseRange(header: string | undefined, size: number): ByteRange | 'unsatisfiable' | undefined {
  if (header === undefined) return undefined;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (m === null) return undefined;
  const [, first, last] = m as unknown as [string, string, string];
  if (first === '' && last === '') return undefined;
  if (first === '') {
    const suffix = Number(last);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(first);
  if (last !== '' && Number(last) < start) return undefined;
  if (start >= size) return 'unsatisfiable';
  return { start, end: last === '' ? size - 1 : Math.min(Number(last), size - 1) };
}

/**
 * Answers GET or HEAD of blob `id` from `files`: 200 with the whole blob, or
 * 206 for a satisfiable single Range; 304 when If-None-Match names its ETag;
 * 416 WALWIRE_ERR_RANGE_NOT_SATISFIABLE; 404 WALWIRE_ERR_NOT_FOUND; 400
 * WALWIRE_ERR_INVALID_BLOB_ID. Never throws: a read error after the headers
 * were sent destroys the response.
 */
export async function serveBlob(req: IncomingMessage, res: ServerResponse, files: BlobDirectory, id: string): Promise<void> {
  if (!isBlobId(id)) {
    sendFailure(res, new InvalidBlobIdError(`blob id must match [A-Za-z0-9_-][A-Za-z0-9._-]{0,127}, received ${describe(id)}`));
    return;
  }
  const info = files.get(id);
  let handle: Awaited<ReturnType<BlobDirectory['open']>>;
  try {
    // Opened by content: undefined when the version was deleted or replaced since the lookup.
    handle = info === undefined ? undefined : await files.open(id, info.sha256);
  } catch (err) {
    sendFailure(res, err); // an I/O error (EMFILE, EIO): 500 WALWIRE_ERR_INTERNAL
    return;
  }
  if (info === undefined || handle === undefined) {
    sendFailure(res, new NotFoundError(`no blob ${JSON.stringify(id)} in this namespace`));
    return;
  }
  const etag = `"${info.sha256}"`;
  const common = {
    etag,
    'x-walwire-sha256': info.sha256,
    'accept-ranges': 'bytes',
  };
  const noneMatch = req.headers['if-none-match'];
  if (noneMatch !== undefined && (noneMatch.trim() === '*' || noneMatch.split(',').some((t) => t.trim().replace(/^W\//, '') === etag))) {
    await handle.close();
    res.writeHead(304, common);
    res.end();
    return;
  }
  // If-Range with another validator: the client's partial copy is stale, send it all.
  const ifRange = req.headers['if-range'];
  const range = ifRange !== undefined && String(ifRange).trim() !== etag ? undefined : parseRange(req.headers.range, info.size);
  if (range === 'unsatisfiable') {
    await handle.close();
    res.setHeader('content-range', `bytes */${info.size}`);
    for (const [k, v] of Object.entries(common)) res.setHeader(k, v);
    sendFailure(res, new RangeNotSatisfiableError(`range ${JSON.stringify(req.headers.range)} lies outside blob ${id} of ${info.size} bytes`));
    return;
  }
  const start = range?.start ?? 0;
  const end = range?.end ?? info.size - 1;
  const length = end - start + 1;
  res.writeHead(range === undefined ? 200 : 206, {
    ...common,
    'content-type': 'application/octet-stream',
    'content-length': length,
    ...(range === undefined ? {} : { 'content-range': `bytes ${start}-${end}/${info.size}` }),
  });
  if (req.method === 'HEAD' || length === 0) {
    await handle.close();
    res.end();
    return;
  }
  try {
    // The stream closes the descriptor at its end or on error (autoClose).
    await pipeline(handle.createReadStream({ start, end, highWaterMark: 256 * 1024 }), res);
  } catch {
    // The client went away, or the read failed mid-body: the headers are out,
    // so the only honest signal left is a cut connection.
    res.destroy();
  }
}
