/**
 * The replication log's tail cache: the newest durable records of one
 * generation, consecutive seqs, copied into one ring buffer that is
 * allocated once and reused.
 *
 * Why a ring and copies rather than keeping each record's own buffer: a
 * record stays in the cache for as long as the writer takes to write
 * `capacityBytes` more (80 ms at 50 MB/s), long enough for V8 to promote
 * its buffer to the old generation, where garbage is only reclaimed by a
 * full mark-compact. At a high write rate that left tens of MB of dead
 * records in the primary's RSS between collections. With the ring, the
 * record buffer the log encodes lives only as long as the record emitted
 * for it is held (by nothing, once the 'record' listeners have run, unless
 * an embedding application keeps it), and the cache costs exactly its
 * capacity.
 *
 * Readers get copies (`get`): a record read from the cache may be held
 * across awaits (a sender waiting for its send window) while later appends
 * overwrite its place in the ring.
 */

interface Entry {
  readonly seq: number;
  /** Offset of the record in the ring. */
  readonly start: number;
  readonly length: number;
  /** Passes of the write position over the ring when the record was placed. */
  readonly lap: number;
}

export class LogTailCache {
  readonly #capacity: number;
  #ring: Buffer | undefined;
  /** Oldest first; entries[first…] are live, consecutive seqs. */
  #entries: (Entry | undefined)[] = [];
  #first = 0;
  #generation: string | undefined;
  #write = 0;
  #lap = 0;
  #bytes = 0;

  /** `capacityBytes` 0 disables the cache. */
  constructor(capacityBytes: number) {
    this.#capacity = capacityBytes;
  }

  /** Bytes of records held. */
  get bytes(): number {
    return this.#bytes;
  }

  /**
   * Copies `record` in as `seq` of `generation`. A seq that does not follow
   * the newest cached one, or another generation, empties the cache first
   * (its seqs must be consecutive); a record larger than the capacity
   * empties it and is not cached.
   */
  add(generation: string, seq: number, record: Uint8Array): void {
    const newest = this.#entries.at(-1);
    if (this.#generation !== generation || (newest !== undefined && newest.seq + 1 !== seq)) this.clear();
    if (record.length > this.#capacity) {
      this.clear();
      return;
    }
    this.#generation = generation;
    this.#ring ??= Buffer.allocUnsafe(this.#capacity);
    if (this.#write + record.length > this.#capacity) {
      this.#write = 0;
      this.#lap++;
    }
    const start = this.#write;
    const end = start + record.length;
    // The records the new one overwrites are the oldest ones: any left from
    // two laps ago, then those of the previous lap that start before `end`
    // (those of this lap all lie below `start`).
    for (let e = this.#entries[this.#first]; e !== undefined; e = this.#entries[this.#first]) {
      if (e.lap >= this.#lap || (e.lap === this.#lap - 1 && e.start >= end)) break;
      this.#bytes -= e.length;
      this.#entries[this.#first++] = undefined;
    }
    this.#ring.set(record, start);
    this.#entries.push({ seq, start, length: record.length, lap: this.#lap });
    this.#bytes += record.length;
    this.#write = end;
    if (this.#first * 2 > this.#entries.length) {
      this.#entries = this.#entries.slice(this.#first);
      this.#first = 0;
    }
  }

  /** True when `seq` of `generation` is cached. */
  has(generation: string | undefined, seq: number): boolean {
    return this.#entry(generation, seq) !== undefined;
  }

  /** A copy of the record cached as `seq` of `generation`, or undefined. */
  get(generation: string | undefined, seq: number): Buffer | undefined {
    const e = this.#entry(generation, seq);
    if (e === undefined) return undefined;
    const copy = Buffer.allocUnsafe(e.length);
    this.#ring!.copy(copy, 0, e.start, e.start + e.length);
    return copy;
  }

  /** Bytes of ring memory held (allocated at the first add, kept until `release`). */
  get ringBytes(): number {
    return this.#ring?.length ?? 0;
  }

  /** Empties the cache and gives its ring memory back (allocated again by the next add). */
  release(): void {
    this.clear();
    this.#ring = undefined;
  }

  /** Empties the cache; the ring is kept for the next records. */
  clear(): void {
    this.#entries = [];
    this.#first = 0;
    this.#generation = undefined;
    this.#write = 0;
    this.#lap = 0;
    this.#bytes = 0;
  }

  #entry(generation: string | undefined, seq: number): Entry | undefined {
    if (generation === undefined || generation !== this.#generation) return undefined;
    const oldest = this.#entries[this.#first];
    if (oldest === undefined || seq < oldest.seq) return undefined;
    return this.#entries[this.#first + seq - oldest.seq];
  }
}
