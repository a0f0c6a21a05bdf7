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

export interface CloseRequest {
  readonly id: number;
  readonly op: 'close';
}

export type CheckpointResponse =
  | { readonly id: number; readonly ok: true; readonly busy: number; readonly log: number; readonly checkpointed: number }
  | { readonly id: number; readonly ok: false; readonly message: string; readonly code: string };

const connections = new Map<string, Database.Database>();

function run(req: CheckpointRequest): CheckpointResponse {
  let db = connections.get(req.path);
  if (db === undefined) {
    db = new Database(req.path, { fileMustExist: true });
    connections.set(req.path, db);
  }
  db.pragma(`busy_timeout = ${Math.floor(req.busyTimeoutMs)}`);
  const rows = db.pragma(`wal_checkpoint(${req.mode === 'TRUNCATE' ? 'TRUNCATE' : 'PASSIVE'})`) as { busy: number; log: number; checkpointed: number }[];
  const row = rows[0] ?? { busy: 1, log: -1, checkpointed: -1 };
  return { id: req.id, ok: true, busy: row.busy, log: row.log, checkpointed: row.checkpointed };
}

parentPort?.on('message', (req: CheckpointRequest | CloseRequest) => {
  if (req.op === 'close') {
    for (const db of connections.values()) db.close();
    connections.clear();
    parentPort!.postMessage({ id: req.id, ok: true, busy: 0, log: 0, checkpointed: 0 } satisfies CheckpointResponse);
    return;
  }
  let res: CheckpointResponse;
  try {
    res = run(req);
  } catch (err) {
    res = { id: req.id, ok: false, message: (err as Error).message, code: (err as { code?: string }).code ?? 'ERR' };
  }
  parentPort!.postMessage(res);
});
