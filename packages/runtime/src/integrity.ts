/**
 * Integrity checks both daemons serve on
 * `POST /v1/namespaces/:ns/integrity-check`. Each check runs in its own
 * short-lived worker thread with its own read-only connection (see
 * integrity-worker.ts), so the event loop keeps serving replication while
 * SQLite reads every page.
 */
import { Worker } from 'node:worker_threads';
import { InvalidOptionError, TimeoutError, describe } from '@walwire/protocol';
import type { IntegrityReply, IntegrityRequest } from './integrity-worker.js';

export interface IntegrityResult {
  /** True only when SQLite answered exactly "ok". */
  readonly ok: boolean;
  /** SQLite's answer (one line per problem), or the open/prepare error. */
  readonly message: string;
  readonly check: 'quick' | 'full';
}

/** `{full?: boolean}` from a request body; anything else is WALWIRE_ERR_INVALID_OPTION. */
export function parseIntegrityBody(body: Record<string, unknown>): { full: boolean } {
  const full = body['full'] ?? false;
  if (typeof full !== 'boolean') throw new InvalidOptionError(`field full must be a boolean, received ${describe(full)}`);
  return { full };
}

/**
 * Runs `PRAGMA quick_check` (or `integrity_check` when `full`) on the
 * database at `path`. A corrupt database resolves `ok: false`; only lock
 * contention beyond `busyTimeoutMs` rejects (WALWIRE_ERR_TIMEOUT).
 */
export function checkIntegrity(path: string, options: { full?: boolean; busyTimeoutMs?: number } = {}): Promise<IntegrityResult> {
  const request: IntegrityRequest = { path, full: options.full ?? false, busyTimeoutMs: options.busyTimeoutMs ?? 5000 };
  const check = request.full ? 'full' : 'quick';
  return new Promise<IntegrityResult>((resolve, reject) => {
    const worker = new Worker(new URL('./integrity-worker.js', import.meta.url), { workerData: request });
    let settled = false;
    worker.once('message', (reply: IntegrityReply) => {
      settled = true;
      if (reply.kind === 'busy') reject(new TimeoutError(`integrity check of ${path}: the database stayed locked for ${request.busyTimeoutMs} ms (${reply.message})`));
      else resolve({ ok: reply.ok, message: reply.message, check });
    });
    worker.once('error', (err) => {
      settled = true;
      reject(err);
    });
    worker.once('exit', (code) => {
      if (!settled) reject(new Error(`integrity check worker exited with code ${code} before answering`));
    });
  });
}
