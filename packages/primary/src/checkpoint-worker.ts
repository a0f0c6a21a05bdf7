/**
 * Worker thread that runs SQLite checkpoints (better-sqlite3 is synchronous,
 * and a checkpoint copies pages, fsyncs the database and may wait on busy
 * locks: none of that may run on the main event loop).
 *
 * POSIX locks belong to the process, not the thread, so this thread's
 * connections share the daemon's locks. That is safe because these are
 * SQLite connections: SQLite defers closing a descriptor while another
 * connection of the process holds locks on the same file. Nothing here opens
 * the database or its -shm with fs.
 */
import Database from 'better-sqlite3';
import { parentPort } from 'node:worker_threads';

export interface CheckpointRequest {
  readonly id: number;
  readonly op: 'checkpoint';
  readonly path: string;
  readonly mode: 'PASSIVE' | 'TRUNCATE';
  readonly busyTimeoutMs: number;
}

/** `PRAGMA quick_check` in this (warm) worker thread: reset-replication's corruption check. */
export interface QuickCheckRequest {
  readonly id: number;
  readonly op: 'quick-check';
  readonly path: string;
  readonly busyTimeoutMs: number;
}

export interface CloseRequest {
  readonly id: number;
  readonly op: 'close';
}

export type CheckpointResponse =
  | { readonly id: number; readonly ok: true; readonly busy: number; readonly log: number; readonly checkpointed: number; readonly check?: string }
  | { readonly id: number; readonly ok: false; readonly message: string; readonly code: string };

const connections = new Map<string, Database.Database>();

function connection(path: string): Database.Database {
  let db = connections.get(path);
  if (db === undefined) {
    db = new Database(path, { fileMustExist: true });
    connections.set(path, db);
  }
  return db;
}

/**
 * SQLite's answer, one line per problem ("ok" when healthy). Severe
 * corruption fails the prepare or the step instead of returning rows: that
 * error is the answer.
 */
function quickCheck(req: QuickCheckRequest): CheckpointResponse {
  let check: string;
  // A fresh read-only connection (about 1 ms): a long-lived one could answer
  // from pages it cached before the file went bad. Closing it is safe, as
  // for every SQLite connection here (see the top of this file).
  let db: Database.Database | undefined;
  try {
    db = new Database(req.path, { readonly: true, fileMustExist: true, timeout: req.busyTimeoutMs });
    const rows = db.pragma('quick_check') as Record<string, unknown>[];
    check = rows.map((r) => String(Object.values(r)[0])).join('\n');
  } catch (err) {
    const code = (err as { code?: string }).code ?? '';
    if (code.startsWith('SQLITE_BUSY')) throw err;
    check = `${code}: ${(err as Error).message}`;
  } finally {
    db?.close();
  }
  return { id: req.id, ok: true, busy: 0, log: 0, checkpointed: 0, check };
}

function run(req: CheckpointRequest): CheckpointResponse {
  const db = connection(req.path);
  db.pragma(`busy_timeout = ${Math.floor(req.busyTimeoutMs)}`);
  const rows = db.pragma(`wal_checkpoint(${req.mode === 'TRUNCATE' ? 'TRUNCATE' : 'PASSIVE'})`) as { busy: number; log: number; checkpointed: number }[];
  const row = rows[0] ?? { busy: 1, log: -1, checkpointed: -1 };
  return { id: req.id, ok: true, busy: row.busy, log: row.log, checkpointed: row.checkpointed };
}

parentPort?.on('message', (req: CheckpointRequest | QuickCheckRequest | CloseRequest) => {
  if (req.op === 'close') {
    for (const db of connections.values()) db.close();
    connections.clear();
    parentPort!.postMessage({ id: req.id, ok: true, busy: 0, log: 0, checkpointed: 0 } satisfies CheckpointResponse);
    return;
  }
  let res: CheckpointResponse;
  try {
    res = req.op === 'quick-check' ? quickCheck(req) : run(req);
  } catch (err) {
    res = { id: req.id, ok: false, message: (err as Error).message, code: (err as { code?: string }).code ?? 'ERR' };
  }
  parentPort!.postMessage(res);
});
