/**
 * The chaos soak's fault schedule: a pure function of (seed, duration), so a
 * failing run is replayed by passing its seed (and its duration) again. The
 * schedule is printed at the start of every run.
 *
 * Timing on a busy machine is not reproducible, so a replay reproduces the
 * faults, their order, their targets and their parameters, and their
 * planned offsets; each fault starts at its offset or when the previous one
 * has finished, whichever is later.
 */

/** mulberry32: small, fast, and good enough for a test schedule. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const NAMESPACES = ['alpha', 'beta'] as const;
export type Namespace = (typeof NAMESPACES)[number];

/**
 * Better-sqlite3 writers, by index (kill-writer targets one of these or a
 * sqlite3 CLI writer). Each runs soak-writer.ts on its namespace.
 */
export const WRITERS: readonly { readonly name: string; readonly ns: Namespace }[] = [
  { name: 'bs-alpha-1', ns: 'alpha' },
  { name: 'bs-alpha-2', ns: 'alpha' },
  { name: 'bs-beta-1', ns: 'beta' },
];

export type Fault =
  /** kill -9 the primary; restart it after downMs (writers keep writing meanwhile). */
  | { readonly kind: 'kill-primary'; readonly downMs: number }
  /** kill -9 a replica; restart it after downMs. */
  | { readonly kind: 'kill-replica'; readonly replica: number; readonly downMs: number }
  /** kill -9 a writer (a better-sqlite3 writer by index, or the sqlite3 CLI writer of a namespace in flight); it is restarted at once. */
  | { readonly kind: 'kill-writer'; readonly writer: number | `cli-${Namespace}` }
  /** Cut every connection through a replica's proxy. */
  | { readonly kind: 'proxy-cut'; readonly replica: number }
  | { readonly kind: 'proxy-delay'; readonly replica: number; readonly ms: number; readonly forMs: number }
  | { readonly kind: 'proxy-throttle'; readonly replica: number; readonly bytesPerSec: number; readonly forMs: number }
  /** XOR `mask` into one byte, `offset` bytes from now, in `direction` (down: primary → replica). */
  | { readonly kind: 'proxy-flip'; readonly replica: number; readonly direction: 'up' | 'down'; readonly offset: number; readonly mask: number }
  /**
   * Restart the primary (SIGTERM) with WALWIRE_FAILPOINTS=`failpoints`; when
   * `reset` is set, call reset-replication of that namespace on it. After it
   * died of the failpoint, or after armedMs, it is restarted without them.
   */
  | { readonly kind: 'failpoint-primary'; readonly failpoints: string; readonly armedMs: number; readonly reset?: Namespace }
  /** The same for a replica; `reset` makes the primary start a new generation so install failpoints are reached. */
  | { readonly kind: 'failpoint-replica'; readonly replica: number; readonly failpoints: string; readonly armedMs: number; readonly reset?: Namespace }
  /** A reader holding one read transaction on a replica database for holdMs. */
  | { readonly kind: 'long-reader'; readonly replica: number; readonly ns: Namespace; readonly holdMs: number }
  /** POST /v1/namespaces/:ns/reset-replication on the primary. */
  | { readonly kind: 'reset-replication'; readonly ns: Namespace };

export type FaultKind = Fault['kind'];

export interface PlannedFault {
  /** Offset from the start of the fault phase, ms. */
  readonly at: number;
  readonly fault: Fault;
}

export interface ScheduleOptions {
  readonly seed: number;
  /** Length of the fault phase, ms. */
  readonly faultMs: number;
  readonly replicas: number;
  /** Shortest and longest gap between two planned faults, ms. */
  readonly gapMs?: readonly [number, number];
}

const REPLICA_APPLY_POINTS = [
  'replica.apply.after-pending-cursor',
  'replica.apply.after-journal-body',
  'replica.apply.after-journal',
  'replica.apply.mid-pages',
  'replica.apply.before-journal-zero',
  'replica.apply.after-commit-before-cursor',
  'replica.apply.after-cursor',
];

const REPLICA_INSTALL_POINTS = [
  'replica.install.after-pending-cursor',
  'replica.install.after-journal',
  'replica.install.mid-pages',
  'replica.install.before-journal-delete',
  'replica.install.after-commit-before-cursor',
];

/** Kinds and their weights. */
const WEIGHTS: readonly [FaultKind, number][] = [
  ['kill-primary', 1],
  ['kill-replica', 2],
  ['kill-writer', 1.5],
  ['proxy-cut', 2],
  ['proxy-delay', 1],
  ['proxy-throttle', 1],
  ['proxy-flip', 2],
  ['failpoint-primary', 1.5],
  ['failpoint-replica', 1.5],
  ['long-reader', 1],
  ['reset-replication', 1],
];

export function makeSchedule(options: ScheduleOptions): PlannedFault[] {
  const random = rng(options.seed ^ 0x5eed);
  const int = (lo: number, hi: number): number => lo + Math.floor(random() * (hi - lo + 1));
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const replica = (): number => int(0, options.replicas - 1);
  const ns = (): Namespace => pick(NAMESPACES);
  const total = WEIGHTS.reduce((s, [, w]) => s + w, 0);
  const kind = (): FaultKind => {
    let x = random() * total;
    for (const [k, w] of WEIGHTS) {
      x -= w;
      if (x < 0) return k;
    }
    return WEIGHTS[0]![0];
  };
  const [gapLo, gapHi] = options.gapMs ?? [1000, 3500];
  const out: PlannedFault[] = [];
  for (let at = int(gapLo, gapHi); at < options.faultMs; at += int(gapLo, gapHi)) {
    out.push({ at, fault: makeFault(kind()) });
  }
  return out;

  function makeFault(k: FaultKind): Fault {
    switch (k) {
      case 'kill-primary':
        return { kind: k, downMs: int(0, 2000) };
      case 'kill-replica':
        return { kind: k, replica: replica(), downMs: int(0, 2000) };
      case 'kill-writer':
        return { kind: k, writer: random() < 0.75 ? int(0, WRITERS.length - 1) : `cli-${ns()}` };
      case 'proxy-cut':
        return { kind: k, replica: replica() };
      case 'proxy-delay':
        return { kind: k, replica: replica(), ms: int(10, 250), forMs: int(1000, 5000) };
      case 'proxy-throttle':
        return { kind: k, replica: replica(), bytesPerSec: int(64, 1024) * 1024, forMs: int(1000, 5000) };
      case 'proxy-flip':
        return { kind: k, replica: replica(), direction: random() < 0.8 ? 'down' : 'up', offset: int(0, 300_000), mask: int(1, 255) };
      case 'failpoint-primary': {
        const armedMs = int(2000, 6000);
        const choice = int(0, 8);
        // Blob reads failing with EIO: a few (retried inside the read budget), or most of them (the stream fails with WALWIRE_ERR_BLOB_READ_FAILED, the replica reconnects and the blob is re-announced).
        if (choice === 8) return { kind: k, failpoints: random() < 0.5 ? `primary.blob.read=errno(EIO)*${int(1, 6)}` : 'primary.blob.read=errno(EIO)%0.9', armedMs };
        // A failed append (write or fsync error): the namespace reopens its log and recovers with a new generation.
        if (choice === 7) return { kind: k, failpoints: `primary.log.append=throw@${int(1, 40)}`, armedMs };
        if (choice === 0) return { kind: k, failpoints: `primary.log.append=kill@${int(1, 40)}`, armedMs };
        if (choice === 1) return { kind: k, failpoints: `primary.log.append.after-sync=kill@${int(1, 40)}`, armedMs };
        if (choice === 2) return { kind: k, failpoints: `primary.checkpoint=kill@${int(1, 3)}`, armedMs };
        if (choice === 3) return { kind: k, failpoints: `primary.checkpoint=throw*${int(1, 4)}`, armedMs };
        if (choice === 4) return { kind: k, failpoints: `primary.checkpoint=delay(${int(100, 1500)})*${int(1, 4)},primary.log.append=delay(${int(5, 60)})%0.3`, armedMs };
        return { kind: k, failpoints: `primary.reset.${choice === 5 ? 'after-check' : 'after-clear'}=kill@1`, armedMs, reset: ns() };
      }
      case 'failpoint-replica': {
        const armedMs = int(2000, 6000);
        if (random() < 0.3) return { kind: k, replica: replica(), failpoints: `${pick(REPLICA_INSTALL_POINTS)}=kill@1`, armedMs, reset: ns() };
        if (random() < 0.15) return { kind: k, replica: replica(), failpoints: `replica.apply.mid-pages=delay(${int(20, 200)})%0.3`, armedMs };
        // Blob saves: a failed save latches a gap the re-stream heals; a kill mid-save leaves only a temp file.
        if (random() < 0.35) return { kind: k, replica: replica(), failpoints: random() < 0.6 ? `replica.blob.save=throw*${int(1, 3)}` : `replica.blob.save=kill@${int(1, 6)}`, armedMs };
        return { kind: k, replica: replica(), failpoints: `${pick(REPLICA_APPLY_POINTS)}=kill@${int(1, 20)}`, armedMs };
      }
      case 'long-reader':
        return { kind: k, replica: replica(), ns: ns(), holdMs: int(1000, 6000) };
      case 'reset-replication':
        return { kind: k, ns: ns() };
    }
  }
}

/** One line per fault, for the start-of-run printout. */
export function describeSchedule(seed: number, faultMs: number, schedule: readonly PlannedFault[]): string {
  const lines = [`soak seed ${seed}, fault phase ${Math.round(faultMs / 1000)} s, ${schedule.length} faults planned:`];
  for (const p of schedule) lines.push(`  +${(p.at / 1000).toFixed(1).padStart(6)} s  ${JSON.stringify(p.fault)}`);
  return lines.join('\n');
}
