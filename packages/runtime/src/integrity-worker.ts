/**
 * Worker thread for one integrity check (`PRAGMA quick_check` or
 * `integrity_check`). A check reads every page, so it may take seconds and
 * must never run on a daemon's event loop.
 *
 * It opens its own read-only SQLite connection with a busy timeout. POSIX
 * locks belong to the process, so this connection shares the daemon's
 * locks; that is safe because it is a SQLite connection (SQLite defers
 * closing a descriptor while another connection of the process holds locks
 * on the same inode). Nothing here touches the database file with `fs`.
 */
import Database from 'better-sqlite3';
import { parentPort, workerData } from 'node:worker_threads';

export interface IntegrityRequest {
  readonly path: string;
  readonly full: boolean;
  readonly busyTimeoutMs: number;
}

export type IntegrityReply =
  | { readonly kind: 'result'; readonly ok: boolean; readonly message: string }
  | { readonly kind: 'busy'; readonly message: string };

function run(req: IntegrityRequest): IntegrityReply {
  let db: Database.Database | undefined;
  try {
    db = new Database(req.path, { readonly: true, fileMustExist: true, timeout: req.busyTimeoutMs });
    const rows = db.pragma(req.full ? 'integrity_check' : 'quick_check') as Record<string, unknown>[];
    const lines = rows.map((r) => String(Object.values(r)[0]));
    const ok = lines.length === 1 && lines[0] === 'ok';
    return { kind: 'result', ok, message: lines.join('\n') };
  } catch (err) {
    const code = (err as { code?: string }).code ?? '';
    const message = `${code ? `${code}: ` : ''}${(err as Error).message}`;
    // Lock contention says nothing about the database: the caller retries.
    if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') return { kind: 'busy', message };
    // Severe corruption (not a database, a broken schema page) fails the
    // open or the prepare rather than returning rows: that is a failed check.
    return { kind: 'result', ok: false, message };
  } finally {
    db?.close();
  }
}

parentPort?.postMessage(run(workerData as IntegrityRequest));
