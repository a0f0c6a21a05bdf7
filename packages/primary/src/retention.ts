/**
 * Log retention: how much replication log each namespace keeps.
 *
 * The log is kept from the oldest seq a replica still needs (its durable seq
 * + 1) for every replica that is connected or was seen within
 * `replicaTtlMs`, but never more than `maxBytes` of segments nor segments
 * older than `maxAgeMs`: a replica that falls behind those limits bootstraps
 * from a snapshot when it returns ("behind retention" in WELCOME). Whole
 * segments are dropped, oldest first; the newest is always kept.
 *
 * A bootstrap needs the snapshot image at seq S and the log from S + 1, so
 * before dropping records the snapshot image is rolled forward past them
 * (verified against the log's checksum). Order of a pass, and a crash
 * between steps:
 *   1. advance the snapshot image (published atomically; snapshot-store.ts)
 *      → crash: a newer image and the whole log; nothing lost;
 *   2. unlink segments below the target, oldest first, then fsync the
 *      directory (ReplicationLog.truncateBefore) → crash: a contiguous suffix
 *      of the log remains, still starting at or before the image's seq + 1.
 *
 * Replicas seen are remembered in `<dataDir>/replicas.json` (written
 * durably), so a primary restart does not forget a replica that is briefly
 * offline.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Logger, writeFileDurable } from '@walwire/runtime';
import type { Primary } from './primary.js';

export interface RetentionOptions {
  /**
   * Most log bytes kept per namespace, whatever replicas need.
   * @default 1073741824 (1 GiB)
   */
  readonly maxBytes: number;
  /**
   * Segments older than this are dropped, whatever replicas need.
   * @default 604800000 (7 days)
   */
  readonly maxAgeMs: number;
  /**
   * A disconnected replica still holds the log back for this long after it was last seen.
   * @default 3600000 (1 hour)
   */
  readonly replicaTtlMs: number;
  /**
   * Interval between retention passes.
   * @default 30000
   */
  readonly intervalMs: number;
}

export const DEFAULT_RETENTION: RetentionOptions = Object.freeze({
  maxBytes: 1024 * 1024 * 1024,
  maxAgeMs: 7 * 24 * 3_600_000,
  replicaTtlMs: 3_600_000,
  intervalMs: 30_000,
});

/** What one replica acknowledged for one namespace. */
export interface ReplicaMark {
  readonly replicaId: string;
  readonly ns: string;
  readonly generation: string;
  readonly durableSeq: number;
}

interface Seen extends ReplicaMark {
  seenAt: number;
}

export interface RetentionPass {
  readonly ns: string;
  readonly firstSeq: number;
  readonly removedSegments: number;
  /** Lowest seq a replica within the TTL still needs (head + 1 when none). */
  readonly neededSeq: number;
}

export class Retention {
  readonly #primary: Primary;
  readonly #options: RetentionOptions;
  readonly #logger: Logger;
  readonly #file: string;
  readonly #connected: () => readonly ReplicaMark[];
  readonly #seen = new Map<string, Seen>();
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<unknown> = Promise.resolve();
  #dirty = false;

  constructor(primary: Primary, options: RetentionOptions, dataDir: string, connected: () => readonly ReplicaMark[], logger: Logger) {
    this.#primary = primary;
    this.#options = options;
    this.#logger = logger.child({ component: 'retention' });
    this.#file = join(dataDir, 'replicas.json');
    this.#connected = connected;
    if (existsSync(this.#file)) {
      try {
        for (const s of JSON.parse(readFileSync(this.#file, 'utf8')) as Seen[]) this.#seen.set(key(s), s);
      } catch (err) {
        this.#logger.warn({ err: (err as Error).message }, 'replicas.json unreadable; starting with no remembered replicas');
      }
    }
  }

  /** Records an acknowledgement (called for every ACK). */
  noteAck(mark: ReplicaMark): void {
    const prev = this.#seen.get(key(mark));
    if (prev && prev.generation === mark.generation && prev.durableSeq === mark.durableSeq) {
      prev.seenAt = Date.now();
      return;
    }
    this.#seen.set(key(mark), { ...mark, seenAt: Date.now() });
    this.#dirty = true;
  }

  start(): void {
    this.#timer = setInterval(() => void this.run().catch((err: unknown) => this.#logger.error({ err: (err as Error).message }, 'retention pass failed')), this.#options.intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#running.catch(() => {});
  }

  /** One pass over every namespace (also callable directly, e.g. by tests). */
  run(): Promise<RetentionPass[]> {
    const pass = this.#running.then(() => this.#pass());
    this.#running = pass.catch(() => {});
    return pass;
  }

  async #pass(): Promise<RetentionPass[]> {
    const now = Date.now();
    for (const m of this.#connected()) this.#seen.set(key(m), { ...m, seenAt: now });
    for (const [k, s] of this.#seen) {
      if (now - s.seenAt > this.#options.replicaTtlMs) {
        this.#seen.delete(k);
        this.#dirty = true;
      }
    }
    const passes: RetentionPass[] = [];
    for (const name of this.#primary.namespaces()) {
      let ns;
      try {
        ns = this.#primary.namespace(name);
      } catch {
        continue; // failed namespace: nothing to retain for now
      }
      const log = ns.log;
      const generation = log.generation;
      const head = log.head?.seq ?? 0;
      const segments = log.segments;
      let needed = head + 1;
      for (const s of this.#seen.values()) if (s.ns === name && s.generation === generation) needed = Math.min(needed, s.durableSeq + 1);
      // The limits may cut below what a replica needs: it will bootstrap.
      let floor = segments[0]?.firstSeq ?? 1;
      let total = segments.reduce((n, s) => n + s.bytes, 0);
      for (let i = 0; i < segments.length - 1; i++) {
        const tooBig = total > this.#options.maxBytes;
        const tooOld = now - segments[i + 1]!.createdAt > this.#options.maxAgeMs;
        if (!tooBig && !tooOld) break;
        total -= segments[i]!.bytes;
        floor = segments[i + 1]!.firstSeq;
      }
      let target = Math.max(needed, floor);
      // Only whole segments go: do nothing unless at least one would.
      if (segments.length < 2 || target < segments[1]!.firstSeq) {
        passes.push({ ns: name, firstSeq: log.firstSeq, removedSegments: 0, neededSeq: needed });
        continue;
      }
      const imageSeq = (ns.snapshots.latest?.generation === generation ? ns.snapshots.latest?.seq : undefined) ?? -1;
      const covered = imageSeq + 1 >= target ? imageSeq : await ns.advanceSnapshot();
      target = Math.min(target, covered + 1);
      const removed = await log.truncateBefore(target);
      if (removed > 0) {
        this.#logger.info(
          { ns: name, firstSeq: log.firstSeq, removedSegments: removed, neededSeq: needed, reason: target > needed ? 'size or age limit' : 'no replica needs the older seqs' },
          'log truncated',
        );
      }
      passes.push({ ns: name, firstSeq: log.firstSeq, removedSegments: removed, neededSeq: needed });
    }
    if (this.#dirty) {
      this.#dirty = false;
      await writeFileDurable(this.#file, JSON.stringify([...this.#seen.values()]));
    }
    return passes;
  }
}

function key(m: Pick<ReplicaMark, 'replicaId' | 'ns'>): string {
  return `${m.replicaId}\u0000${m.ns}`;
}
