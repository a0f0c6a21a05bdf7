/**
 * A TCP chaos proxy for loopback tests: sits between a replica and its
 * primary and can cut, delay, throttle, stall, or corrupt bytes on command.
 *
 * Directions: `down` is upstream → client (primary to replica), `up` is
 * client → upstream. Byte offsets count from the moment a fault is armed,
 * across all connections, so a test can say "flip the 20,000th byte the
 * primary sends from now on", which lands inside a large message rather than
 * in WebSocket framing.
 */
import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';

export type Direction = 'up' | 'down';

interface Flip {
  readonly direction: Direction;
  remaining: number;
  readonly mask: number;
}

export interface ChaosStats {
  connections: number;
  bytesUp: number;
  bytesDown: number;
  cuts: number;
  flips: number;
}

export class ChaosProxy {
  readonly #server: Server;
  readonly #targetPort: number;
  readonly #targetHost: string;
  readonly #pairs = new Set<[Socket, Socket]>();
  #delayMs = 0;
  /** Bytes per second per direction; 0 = unlimited. */
  #throttle = 0;
  #stalled = false;
  #refusing = false;
  #flips: Flip[] = [];
  readonly stats: ChaosStats = { connections: 0, bytesUp: 0, bytesDown: 0, cuts: 0, flips: 0 };

  private constructor(targetPort: number, targetHost: string) {
    this.#targetPort = targetPort;
    this.#targetHost = targetHost;
    this.#server = createServer((client) => this.#accept(client));
  }

  /** Starts a proxy on a free loopback port forwarding to targetHost:targetPort. */
  static async start(targetPort: number, targetHost = '127.0.0.1'): Promise<ChaosProxy> {
    const proxy = new ChaosProxy(targetPort, targetHost);
    await new Promise<void>((resolve) => proxy.#server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  /** Destroys every open connection, both sides, at once. */
  cut(): void {
    for (const [a, b] of this.#pairs) {
      a.destroy();
      b.destroy();
    }
    this.#pairs.clear();
    this.stats.cuts++;
  }

  /** Adds `ms` of latency to every chunk in both directions. */
  delay(ms: number): void {
    this.#delayMs = ms;
  }

  /** Limits each direction of each connection to `bytesPerSecond` (0 = unlimited). */
  throttle(bytesPerSecond: number): void {
    this.#throttle = bytesPerSecond;
  }

  /** Stops forwarding without closing anything (a dead peer, as far as the ends can tell). */
  stall(on = true): void {
    this.#stalled = on;
    if (!on) for (const [a, b] of this.#pairs) [a, b].forEach((s) => s.resume());
  }

  /** Refuses new connections (accepted then destroyed at once). */
  refuse(on = true): void {
    this.#refusing = on;
  }

  /** XORs `mask` into the byte at `offset` (0-based) of the `direction` stream, counted from now. */
  flipByte(direction: Direction, offset: number, mask = 0x01): void {
    this.#flips.push({ direction, remaining: offset, mask });
  }

  /** Ends every fault: no delay, throttle, stall or refusal, and no flip still pending. */
  heal(): void {
    this.#delayMs = 0;
    this.#throttle = 0;
    this.#refusing = false;
    this.#flips = [];
    this.stall(false);
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(client: Socket): void {
    if (this.#refusing) {
      client.destroy();
      return;
    }
    this.stats.connections++;
    const upstream = connect(this.#targetPort, this.#targetHost);
    const pair: [Socket, Socket] = [client, upstream];
    this.#pairs.add(pair);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      this.#pairs.delete(pair);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    this.#forward(client, upstream, 'up');
    this.#forward(upstream, client, 'down');
  }

  #forward(from: Socket, to: Socket, direction: Direction): void {
    // A per-direction chain keeps chunk order while delays and throttling apply.
    let chain = Promise.resolve();
    let budgetStart = performance.now();
    let budgetBytes = 0;
    from.on('data', (chunk: Buffer) => {
      if (this.#stalled) {
        from.pause();
        const wait = setInterval(() => {
          if (!this.#stalled || from.destroyed) {
            clearInterval(wait);
            from.resume();
          }
        }, 20);
      }
      const data = this.#corrupt(Buffer.from(chunk), direction);
      if (direction === 'up') this.stats.bytesUp += data.length;
      else this.stats.bytesDown += data.length;
      from.pause();
      chain = chain.then(async () => {
        if (this.#delayMs > 0) await sleep(this.#delayMs);
        if (this.#throttle > 0) {
          budgetBytes += data.length;
          const due = budgetStart + (budgetBytes / this.#throttle) * 1000;
          const wait = due - performance.now();
          if (wait > 0) await sleep(wait);
          if (performance.now() - budgetStart > 5000) {
            budgetStart = performance.now();
            budgetBytes = 0;
          }
        }
        if (!to.destroyed) to.write(data);
        if (!this.#stalled && !from.destroyed) from.resume();
      });
    });
  }

  #corrupt(chunk: Buffer, direction: Direction): Buffer {
    for (const flip of this.#flips) {
      if (flip.direction !== direction || flip.remaining < 0) continue;
      if (flip.remaining < chunk.length) {
        chunk[flip.remaining]! ^= flip.mask;
        flip.remaining = -1;
        this.stats.flips++;
      } else {
        flip.remaining -= chunk.length;
      }
    }
    this.#flips = this.#flips.filter((f) => f.remaining >= 0);
    return chunk;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
