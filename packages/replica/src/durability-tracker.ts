/**
 * The durable cursor (design.md invariant 2): the last seq such that every
 * blob event at or before it is durably saved and verified. It never exceeds
 * the applied seq and never moves backwards.
 *
 * Three things hold it below the applied seq:
 * - a hold per blob event announced on this connection and not yet saved
 *   (`hold` at BLOB_BEGIN / BLOB_DELETE, `release` once durable): the
 *   announcement precedes the event's seq in the stream, so the hold is in
 *   place before the seq can be applied;
 * - a latched gap after a failed save (`latchGap`): the cursor stays below
 *   it for the rest of the connection while transactions keep applying;
 * - a barrier while the re-stream is incomplete: whenever the durable seq is
 *   below the applied seq at the start of a connection (after a gap, a
 *   dropped connection or a restart), the blob events in between are not
 *   known to be saved. The primary re-announces them all from the durable
 *   seq + 1 and then sends STREAM_MARK; `mark` lifts the barrier, and from
 *   then on the re-announced events' holds alone decide.
 */
import { InvalidTxnError } from '@walwire/protocol';

export class DurabilityTracker {
  #applied: number;
  #durable: number;
  readonly #held = new Set<number>();
  #gap: number | null = null;
  /** The applied seq the re-stream must pass before the durable seq may move, or null. */
  #barrier: number | null;

  constructor(appliedSeq: number, durableSeq: number) {
    this.#applied = appliedSeq;
    this.#durable = Math.min(durableSeq, appliedSeq);
    this.#barrier = this.#durable < appliedSeq ? appliedSeq : null;
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

  /** The applied seq a re-stream must pass before the cursor moves, or null. */
  get barrierSeq(): number | null {
    return this.#barrier;
  }

  /**
   * The highest seq the durable cursor may reach right now if `appliedSeq`
   * were applied: the applier records this cap with each batch.
   */
  capFor(appliedSeq: number): number {
    if (this.#barrier !== null) return this.#durable;
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

  /** A blob save at `seq` failed: hold the durable seq below it until the next connection's re-stream. */
  latchGap(seq: number): void {
    this.#held.delete(seq);
    if (this.#gap === null || seq < this.#gap) this.#gap = Math.max(seq, this.#durable + 1);
  }

  /**
   * A new connection streams this namespace from the durable seq + 1. What
   * the old one had in flight is void (its holds and gap fold into the
   * barrier), and the cursor waits for this stream's STREAM_MARK.
   */
  startStream(): void {
    this.#held.clear();
    this.#gap = null;
    this.#barrier = this.#durable < this.#applied ? this.#applied : null;
  }

  /** STREAM_MARK: every event at or below `seq` has been announced on this connection. Returns the new durable seq. */
  mark(seq: number): number {
    if (this.#barrier !== null && seq >= this.#barrier) this.#barrier = null;
    return this.noteApplied(this.#applied);
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
    this.#barrier = null;
  }
}
