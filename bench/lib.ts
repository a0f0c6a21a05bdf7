/**
 * The benchmark framework behind `npm run bench`. Each suite measures a
 * walwire figure next to its baseline in the same run and returns a section
 * for docs/benchmarks.md. Suites register in suites.ts.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Figure {
  /** What was measured, e.g. "writer throughput ratio, 10 rows/txn". */
  readonly name: string;
  /** Median (or the single measured value). */
  readonly value: number;
  readonly unit: string;
  readonly p99?: number;
  /** The issue's target, e.g. "≥ 0.9"; omitted when the issue states none. */
  readonly goal?: string;
  /** Whether the goal is met; required when goal is set. */
  readonly met?: boolean;
  /** Baseline measured in the same run, and walwire / baseline. */
  readonly baseline?: { readonly name: string; readonly value: number; readonly unit: string };
  readonly ratio?: number;
  readonly note?: string;
}

export interface BenchSection {
  readonly title: string;
  /** Issue number whose targets this section reports. */
  readonly issue: number;
  readonly figures: readonly Figure[];
  /** Method and caveats, one paragraph each. */
  readonly notes?: readonly string[];
  /** Extra markdown (tables, an image link) placed after the figures. */
  readonly extra?: string;
}

export interface BenchContext {
  /** Fresh temp directory, removed after the suite. */
  tmpDir(): string;
  /** True for `npm run bench -- --quick`: smaller sizes, fewer rounds. */
  readonly quick: boolean;
  log(message: string): void;
}

export interface Benchmark {
  readonly id: string;
  readonly title: string;
  run(ctx: BenchContext): Promise<BenchSection>;
}

/**
 * Writes every dirty page of every filesystem back (sync(1)) before a
 * latency measurement. Files an earlier step of the suite wrote are
 * otherwise written back by the kernel once they are 30 s old
 * (vm.dirty_expire_centisecs), in the middle of a later measurement, where
 * they stall every fdatasync behind them for 50-170 ms: a stall of the
 * benchmark's own making, which appeared in the same round of every run.
 */
export function flushDirtyPages(): void {
  execFileSync('sync');
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export const median = (values: readonly number[]): number => percentile(values, 50);

export function makeContext(quick: boolean): { ctx: BenchContext; cleanup: () => void } {
  const dirs: string[] = [];
  return {
    ctx: {
      quick,
      tmpDir: () => {
        const dir = mkdtempSync(join(tmpdir(), 'walwire-bench-'));
        dirs.push(dir);
        return dir;
      },
      log: (message) => console.error(`[bench] ${message}`),
    },
    cleanup: () => {
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    },
  };
}
