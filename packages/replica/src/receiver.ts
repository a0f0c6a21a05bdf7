/**
 * The replica's receive side of one connection, as an explicit state machine
 * (in the manner of ws's Receiver). It takes raw frames, decodes and
 * validates them (codec.ts), enforces the order the protocol allows, joins
 * TXN_PART messages into whole transactions, and hands complete units to a
 * sink. It performs no I/O: the client feeds it bytes and acts on the calls.
 *
 * Connection states:
 *
 *     awaiting-welcome ──WELCOME──▶ streaming ──(close)──▶ closed
 *
 * Per namespace, while streaming:
 *
 *     stream ◀──────────────────────────────┐
 *       │ SNAPSHOT_BEGIN                    │ SNAPSHOT_END
 *       ▼                                   │
 *     snapshot ──SNAPSHOT_CHUNK (in order)──┘
 *     stream ──TXN_PART 0──▶ assembling ──TXN_PART n-1──▶ stream (whole txn to the sink)
 *
 * Blob messages may come between any two of these (their content is
 * interleaved with the log); a BLOB_BEGIN or BLOB_DELETE in stream mode
 * names a seq above every transaction delivered, and inside a snapshot
 * stream only the snapshot's own seq (the bootstrap copy of its blobs).
 *
 * Any violation throws a ProtocolError subclass whose `code` the client sends
 * back in an ERROR message before closing: a frame that fails its CRC
 * (WALWIRE_ERR_FRAME_CHECKSUM) is never decoded, and nothing from it reaches
 * the database (invariant 4).
 */
import {
  type BlobBeginMessage,
  type BlobChunkMessage,
  type BlobDeleteMessage,
  type BlobEndMessage,
  type BlobGoneMessage,
  type ErrorMessage,
  InvalidMessageError,
  type Message,
  MessageType,
  type PageImage,
  type ProtocolLimits,
  type SnapshotBeginMessage,
  type SnapshotChunkMessage,
  type Txn,
  type TxnPartMessage,
  UnexpectedMessageError,
  type WelcomeMessage,
  decodeMessage,
  messageTypeName,
} from '@walwire/protocol';

export type ReceiverState = 'awaiting-welcome' | 'streaming' | 'closed';

/** Where a Receiver delivers what it accepted. Calls are synchronous; the sink queues work. */
export interface ReceiverSink {
  welcome(message: WelcomeMessage): void;
  /** Whole transactions of one namespace and generation, seqs strictly increasing. */
  txns(ns: string, generation: string, txns: readonly Txn[], bytes: number): void;
  snapshotBegin(message: SnapshotBeginMessage): void;
  snapshotChunk(message: SnapshotChunkMessage): void;
  snapshotEnd(ns: string, generation: string, seq: number): void;
  /** A blob message; `bootstrap` when it belongs to a snapshot stream (copying the blobs held at the snapshot's seq). */
  blob(message: BlobBeginMessage | BlobChunkMessage | BlobEndMessage | BlobDeleteMessage | BlobGoneMessage, bootstrap: boolean): void;
  /** STREAM_MARK: every event of `ns` at or below `seq` has been sent on this connection. */
  mark(ns: string, generation: string, seq: number): void;
  heartbeat(sentAt: number): void;
  peerError(message: ErrorMessage): void;
}

interface Assembly {
  readonly seq: number;
  readonly partCount: number;
  readonly generation: string;
  next: number;
  bytes: number;
  readonly pages: PageImage[];
}

interface NamespaceStream {
  generation: string;
  mode: 'stream' | 'snapshot';
  /** Highest seq delivered; the next TXN must be above it. */
  lastSeq: number;
  assembly: Assembly | null;
  /** Next snapshot chunk index expected. */
  nextChunk: number;
  chunkCount: number;
}

export class Receiver {
  readonly #limits: ProtocolLimits;
  readonly #sink: ReceiverSink;
  readonly #requested: ReadonlySet<string>;
  /** Largest transaction assembled from parts, in page bytes. */
  readonly #maxTxnBytes: number;
  readonly #streams = new Map<string, NamespaceStream>();
  #state: ReceiverState = 'awaiting-welcome';

  constructor(options: { limits: ProtocolLimits; sink: ReceiverSink; namespaces: Iterable<string>; maxTxnBytes: number }) {
    this.#limits = options.limits;
    this.#sink = options.sink;
    this.#requested = new Set(options.namespaces);
    this.#maxTxnBytes = options.maxTxnBytes;
  }

  get state(): ReceiverState {
    return this.#state;
  }

  /** Stops accepting frames (the connection is closing). */
  close(): void {
    this.#state = 'closed';
    this.#streams.clear();
  }

  /** Decodes, validates and dispatches one frame. Throws ProtocolError subclasses. */
  receive(frame: Uint8Array): void {
    if (this.#state === 'closed') throw new UnexpectedMessageError('frame received after the connection closed');
    const message = decodeMessage(frame, this.#limits);
    this.#dispatch(message);
  }

  #dispatch(m: Message): void {
    switch (m.type) {
      case MessageType.HEARTBEAT:
        this.#sink.heartbeat(m.sentAt);
        return;
      case MessageType.ERROR:
        this.#sink.peerError(m);
        return;
      case MessageType.WELCOME:
        return this.#welcome(m);
      default:
        break;
    }
    if (this.#state !== 'streaming') {
      throw new UnexpectedMessageError(`${messageTypeName(m.type)} before WELCOME`);
    }
    switch (m.type) {
      case MessageType.TXN: {
        const s = this.#stream(m.ns, m.generation, 'stream', m.type);
        if (s.assembly !== null) throw new UnexpectedMessageError(`TXN for ${m.ns} while seq ${s.assembly.seq} is still arriving in parts`);
        const first = m.txns[0]!;
        this.#checkSeq(s, m.ns, first.seq);
        s.lastSeq = m.txns[m.txns.length - 1]!.seq;
        let bytes = 0;
        for (const t of m.txns) for (const p of t.pages) bytes += p.data.length;
        this.#sink.txns(m.ns, m.generation, m.txns, bytes);
        return;
      }
      case MessageType.TXN_PART:
        return this.#part(m);
      case MessageType.SNAPSHOT_BEGIN: {
        const s = this.#stream(m.ns, m.generation, null, m.type);
        s.generation = m.generation;
        s.mode = 'snapshot';
        s.assembly = null;
        s.nextChunk = m.fromChunk;
        s.chunkCount = m.chunkCrcs.length;
        s.lastSeq = m.seq;
        this.#sink.snapshotBegin(m);
        return;
      }
      case MessageType.SNAPSHOT_CHUNK: {
        const s = this.#stream(m.ns, m.generation, 'snapshot', m.type);
        if (m.index !== s.nextChunk || m.index >= s.chunkCount) {
          throw new UnexpectedMessageError(`SNAPSHOT_CHUNK ${m.index} for ${m.ns}, expected chunk ${s.nextChunk} of ${s.chunkCount}`);
        }
        s.nextChunk++;
        this.#sink.snapshotChunk(m);
        return;
      }
      case MessageType.SNAPSHOT_END: {
        const s = this.#stream(m.ns, m.generation, 'snapshot', m.type);
        if (s.nextChunk !== s.chunkCount) {
          throw new UnexpectedMessageError(`SNAPSHOT_END for ${m.ns} after ${s.nextChunk} of ${s.chunkCount} chunks`);
        }
        s.mode = 'stream';
        this.#sink.snapshotEnd(m.ns, m.generation, m.seq);
        return;
      }
      case MessageType.BLOB_BEGIN:
      case MessageType.BLOB_CHUNK:
      case MessageType.BLOB_END:
      case MessageType.BLOB_GONE:
      case MessageType.BLOB_DELETE: {
        const s = this.#stream(m.ns, m.generation, null, m.type);
        if (m.generation !== s.generation) {
          throw new UnexpectedMessageError(`${messageTypeName(m.type)} for ${m.ns} carries generation ${m.generation}, the stream is ${s.generation}`);
        }
        const bootstrap = s.mode === 'snapshot';
        if (bootstrap && (m.seq !== s.lastSeq || m.type === MessageType.BLOB_DELETE)) {
          throw new UnexpectedMessageError(`${messageTypeName(m.type)} for ${m.ns} seq ${m.seq} inside the snapshot stream of seq ${s.lastSeq}`);
        }
        if (!bootstrap && (m.type === MessageType.BLOB_BEGIN || m.type === MessageType.BLOB_DELETE) && m.seq <= s.lastSeq) {
          throw new UnexpectedMessageError(`${messageTypeName(m.type)} for ${m.ns} seq ${m.seq} is not above the last seq received, ${s.lastSeq}`);
        }
        this.#sink.blob(m, bootstrap);
        return;
      }
      case MessageType.STREAM_MARK: {
        this.#stream(m.ns, m.generation, 'stream', m.type);
        this.#sink.mark(m.ns, m.generation, m.seq);
        return;
      }
      default:
        throw new UnexpectedMessageError(`${messageTypeName(m.type)} is not sent by a primary`);
    }
  }

  #welcome(m: WelcomeMessage): void {
    if (this.#state !== 'awaiting-welcome') throw new UnexpectedMessageError('second WELCOME on one connection');
    for (const n of m.namespaces) {
      if (!this.#requested.has(n.ns)) throw new UnexpectedMessageError(`WELCOME names namespace ${n.ns}, which this replica did not ask for`);
      this.#streams.set(n.ns, { generation: n.generation, mode: n.mode, lastSeq: 0, assembly: null, nextChunk: 0, chunkCount: 0 });
    }
    this.#state = 'streaming';
    this.#sink.welcome(m);
  }

  #stream(ns: string, generation: string, mode: 'stream' | 'snapshot' | null, type: number): NamespaceStream {
    const s = this.#streams.get(ns);
    if (s === undefined) throw new UnexpectedMessageError(`${messageTypeName(type)} for namespace ${ns}, which WELCOME did not open`);
    if (mode !== null && s.mode !== mode) {
      throw new UnexpectedMessageError(`${messageTypeName(type)} for ${ns} while it is in ${s.mode} mode`);
    }
    if (mode !== null && generation !== s.generation) {
      throw new UnexpectedMessageError(`${messageTypeName(type)} for ${ns} carries generation ${generation}, the stream is ${s.generation}`);
    }
    return s;
  }

  #checkSeq(s: NamespaceStream, ns: string, seq: number): void {
    if (seq <= s.lastSeq) throw new UnexpectedMessageError(`seq ${seq} for ${ns} is not above the last seq received, ${s.lastSeq}`);
  }

  #part(m: TxnPartMessage): void {
    const s = this.#stream(m.ns, m.generation, 'stream', m.type);
    let a = s.assembly;
    if (a === null) {
      if (m.part !== 0) throw new UnexpectedMessageError(`TXN_PART ${m.part} of seq ${m.seq} for ${m.ns} without part 0`);
      this.#checkSeq(s, m.ns, m.seq);
      a = { seq: m.seq, partCount: m.partCount, generation: m.generation, next: 0, bytes: 0, pages: [] };
      s.assembly = a;
    }
    if (m.seq !== a.seq || m.part !== a.next || m.partCount !== a.partCount) {
      throw new UnexpectedMessageError(`TXN_PART ${m.part}/${m.partCount} of seq ${m.seq} for ${m.ns}, expected part ${a.next}/${a.partCount} of seq ${a.seq}`);
    }
    for (const p of m.pages) {
      a.bytes += p.data.length;
      // Copy: the frame's memory is released once this call returns.
      a.pages.push({ pgno: p.pgno, data: Uint8Array.from(p.data) });
    }
    if (a.bytes > this.#maxTxnBytes) {
      throw new InvalidMessageError(`seq ${a.seq} for ${m.ns} exceeds maxTxnBytes ${this.#maxTxnBytes} after part ${m.part}`);
    }
    a.next++;
    if (a.next < a.partCount) return;
    const seen = new Set<number>();
    for (const p of a.pages) {
      if (seen.has(p.pgno)) throw new InvalidMessageError(`seq ${a.seq} for ${m.ns} repeats page ${p.pgno} across parts`);
      seen.add(p.pgno);
    }
    s.assembly = null;
    s.lastSeq = a.seq;
    const txn: Txn = { seq: a.seq, commitSize: m.commitSize, checksum: m.checksum, commitTime: m.commitTime, pages: a.pages };
    this.#sink.txns(m.ns, a.generation, [txn], a.bytes);
  }
}
