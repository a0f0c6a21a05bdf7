/**
 * Exponential backoff with full jitter (delay drawn uniformly from
 * [0, min(max, base·2^attempt)]), so that many replicas reconnecting after a
 * primary restart do not arrive in lockstep.
 */
export class Backoff {
  readonly #baseMs: number;
  readonly #maxMs: number;
  readonly #random: () => number;
  #attempt = 0;

  constructor(baseMs: number, maxMs: number, random: () => number = Math.random) {
    this.#baseMs = baseMs;
    this.#maxMs = maxMs;
    this.#random = random;
  }

  /** Failed attempts since the last reset. */
  get attempt(): number {
    return this.#attempt;
  }

  /** The delay before the next attempt; grows the ceiling for the one after. */
  next(): number {
    const ceiling = Math.min(this.#maxMs, this.#baseMs * 2 ** Math.min(this.#attempt, 30));
    this.#attempt++;
    return Math.max(1, Math.round(this.#random() * ceiling));
  }

  reset(): void {
    this.#attempt = 0;
  }
}
