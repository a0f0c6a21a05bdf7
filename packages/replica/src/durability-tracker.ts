/**
 * The durable cursor (design.md invariant 2): the last seq such that every
 * blob event at or before it is durably saved and verified. It never exceeds
 * the applied seq and never moves backwards.
 *
 * Without blob events (this issue) it advances with the applied seq. The blob
 * writer holds it back with `hold(seq)` for each blob event still being
 * saved and `release(seq)` once saved, and latches a gap with `latchGap(seq)`
 * after a failed save: the durable seq then stays below that seq while
 * transactions keep being applied, until the re-stream from the durable seq
 * saves the blob and `clearGap()` is called.
 */
import { InvalidTxnError } from '@walwire/protocol';

export class DurabilityTracker {
  #applied: number;
  #durable: number;
  readonly #held = new Set<number>();
  #gap: number | null = null;

  constructor(appliedSeq: number, durableSeq: number) {
    this.#applied = appliedSeq;
    this.#durable = Math.min(durableSeq, appliedSeq);
  }

  /** The current durable seq. */
  get durableSeq(): number {
    return this.#durable;
  }

  /** Seqs held back by blob events in flight. */
  get heldSeqs(): readonly number[] {
    return [...this.#held].sort((a, b) => a - b);
  }

  /** The latched gap, or null. */
  get gapSeq(): number | null {
    return this.#gap;
  }

  /**
   * The highest seq the durable cursor may reach right now if `appliedSeq`
   * were applied: the applier records this cap with each batch.
   */
  capFor(appliedSeq: number): number {
    let cap = appliedSeq;
    for (const s of this.#held) cap = Math.min(cap, s - 1);
    if (this.#gap !== null) cap = Math.min(cap, this.#gap - 1);
    return Math.max(this.#durable, cap);
  }

  /** Records a committed applied seq; returns the new durable seq. */
  noteApplied(seq: number): number {
    if (seq > this.#applied) this.#applied = seq;
    this.#durable = this.capFor(this.#applied);
    return this.#durable;
  }

  /** Sets the durable seq recorded by the applier (it applied `capFor` under its lock). */
  noteDurable(seq: number): void {
    if (seq > this.#durable && seq <= this.#applied) this.#durable = seq;
  }

  /** A blob event at `seq` is being saved: the durable seq stays below it until `release`. */
  hold(seq: number): void {
    if (seq <= this.#durable) {
      throw new InvalidTxnError(`blob event seq ${seq} is at or below the durable seq ${this.#durable}`);
    }
    this.#held.add(seq);
  }

  /** The blob event at `seq` is durably saved and verified. Returns the new durable seq. */
  release(seq: number): number {
    this.#held.delete(seq);
    return this.noteApplied(this.#applied);
  }

  /** A blob save at `seq` failed: hold the durable seq below it until `clearGap`. */
  latchGap(seq: number): void {
    this.#held.delete(seq);
    if (this.#gap === null || seq < this.#gap) this.#gap = Math.max(seq, this.#durable + 1);
  }

  /**
   * Starts over at a snapshot's position: seqs restart with a new
   * generation, so this is the one move that may go backwards.
   */
  reset(appliedSeq: number, durableSeq: number): void {
    this.#applied = appliedSeq;
    this.#durable = Math.min(durableSeq, appliedSeq);
    this.#held.clear();
    this.#gap = null;
  }

  /** The gap was repaired by a re-stream. Returns the new durable seq. */
  clearGap(): number {
    this.#gap = null;
    return this.noteApplied(this.#applied);
  }
}
