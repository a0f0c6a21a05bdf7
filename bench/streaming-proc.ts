/**
 * Bench-only plumbing for the streaming suite: child processes that are
 * always killed, the walwire daemons started from their built CLIs (the same
 * flags test/harness/cluster.ts uses), a throttling TCP proxy, and RSS
 * sampling from /proc.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const PRIMARY_CLI = fileURLToPath(new URL('../../packages/primary/dist/cli.js', import.meta.url));
const REPLICA_CLI = fileURLToPath(new URL('../../packages/replica/dist/cli.js', import.meta.url));

/** Compiled bench script next to this file (bench/dist). */
export const benchScript = (name: string): string => fileURLToPath(new URL(`./${name}.js`, import.meta.url));

const live = new Set<Proc>();

/** SIGKILLs every child still running (synchronous; safe in finally and on exit). */
export function killAll(): void {
  for (const p of live) p.kill9();
}
process.on('exit', killAll);

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A child process whose stdout is read line by line (never left to fill its pipe). */
export class Proc {
  readonly child: ChildProcess;
  readonly name: string;
  /** Last stdout lines (bounded unless keepAll). */
  readonly lines: string[] = [];
  readonly stderr: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  #waiters: { re: RegExp; resolve: (line: string) => void }[] = [];
  readonly #keep: number;
  onLine: ((line: string) => void) | undefined;

  constructor(name: string, args: readonly string[], options: { env?: Record<string, string>; keepLines?: number } = {}) {
    this.name = name;
    this.#keep = options.keepLines ?? 200;
    // WALWIRE_BENCH_NODE_ARGS (space-separated) goes before the script, e.g.
    // "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile a suite's daemons.
    const nodeArgs = process.env['WALWIRE_BENCH_NODE_ARGS']?.split(' ').filter(Boolean) ?? [];
    this.child = spawn(process.execPath, [...nodeArgs, ...args], { env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(this);
    this.exited = once(this.child, 'exit').then(([code, signal]) => {
      live.delete(this);
      return { code: code as number | null, signal: signal as NodeJS.Signals | null };
    });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      this.lines.push(line);
      if (this.lines.length > this.#keep) this.lines.shift();
      this.onLine?.(line);
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.re.test(line)) return true;
        w.resolve(line);
        return false;
      });
    });
    createInterface({ input: this.child.stderr! }).on('line', (line) => {
      this.stderr.push(line);
      if (this.stderr.length > 50) this.stderr.shift();
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** First stdout line (past or future) matching `re`. */
  waitForLine(re: RegExp, timeoutMs: number): Promise<string> {
    const seen = this.lines.find((l) => re.test(l));
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const fail = (why: string): void => {
        clearTimeout(timer);
        this.child.off('exit', onExit);
        reject(new Error(`${this.name}: ${why} (waiting for ${re}); stderr: ${this.stderr.slice(-5).join(' | ')}`));
      };
      const timer = setTimeout(() => fail(`no such line within ${timeoutMs} ms`), timeoutMs);
      const onExit = (code: number | null, signal: string | null): void => fail(`exited (code ${code}, signal ${signal})`);
      this.child.once('exit', onExit);
      this.#waiters.push({
        re,
        resolve: (line) => {
          clearTimeout(timer);
          this.child.off('exit', onExit);
          resolve(line);
        },
      });
    });
  }

  kill9(): void {
    if (this.running) this.child.kill('SIGKILL');
  }

  /** SIGTERM, then SIGKILL after graceMs. */
  async stop(graceMs = 5000): Promise<void> {
    if (this.running) this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.kill9(), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

/** Runs a bench script to completion and returns its last stdout line parsed as JSON. */
export async function runScript<T>(name: string, spec: unknown, timeoutMs: number): Promise<T> {
  const p = new Proc(name, [benchScript(name), JSON.stringify(spec)], { keepLines: 5 });
  const timer = setTimeout(() => p.kill9(), timeoutMs);
  const status = await p.exited;
  clearTimeout(timer);
  const last = p.lines[p.lines.length - 1];
  if (status.code !== 0 || last === undefined) {
    throw new Error(`${name} failed (code ${status.code}, signal ${status.signal}): ${p.stderr.slice(-10).join('\n')}`);
  }
  return JSON.parse(last) as T;
}

/** A walwire daemon process and its HTTP port; counts warn/error log lines by message. */
export class Daemon {
  readonly proc: Proc;
  readonly port: number;
  readonly token: string;
  /** "msg" → count, for log lines at warn level or above. */
  readonly warnings: Map<string, number>;
  /** "msg" → count, for every log line. */
  readonly messages: Map<string, number>;

  private constructor(proc: Proc, port: number, token: string, warnings: Map<string, number>, messages: Map<string, number>) {
    this.proc = proc;
    this.port = port;
    this.token = token;
    this.warnings = warnings;
    this.messages = messages;
  }

  static async start(kind: 'primary' | 'replica', args: readonly string[], token: string): Promise<Daemon> {
    const cli = kind === 'primary' ? PRIMARY_CLI : REPLICA_CLI;
    const proc = new Proc(`walwire-${kind}`, [cli, ...args, '--log-level', 'info', '--no-log-pretty'], { env: { WALWIRE_TOKEN: token } });
    const warnings = new Map<string, number>();
    const messages = new Map<string, number>();
    proc.onLine = (line) => {
      try {
        const rec = JSON.parse(line) as { level?: number; msg?: string };
        const msg = rec.msg ?? '?';
        messages.set(msg, (messages.get(msg) ?? 0) + 1);
        if ((rec.level ?? 0) >= 40) warnings.set(msg, (warnings.get(msg) ?? 0) + 1);
      } catch {
        // not JSON: ignore
      }
    };
    const re = kind === 'primary' ? /"msg":"listening"/ : /"msg":"replica http listening"/;
    const line = await proc.waitForLine(re, 60_000);
    return new Daemon(proc, (JSON.parse(line) as { port: number }).port, token, warnings, messages);
  }

  async get(path: string): Promise<{ status: number; body: Record<string, unknown> }> {
    const res = await fetch(`http://127.0.0.1:${this.port}${path}`, { headers: { authorization: `Bearer ${this.token}` } });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  }

  /** "msg ×n, …" of warn/error lines, or "none". */
  warningSummary(): string {
    return this.warnings.size === 0 ? 'none' : [...this.warnings].map(([m, n]) => `"${m}" ×${n}`).join(', ');
  }
}

export function startPrimary(opts: { dataDir: string; db: string; token: string }): Promise<Daemon> {
  return Daemon.start('primary', ['--db', `app=${opts.db}`, '--data-dir', opts.dataDir, '--port', '0'], opts.token);
}

export function startReplica(opts: { dataDir: string; primaryPort: number; token: string }): Promise<Daemon> {
  return Daemon.start(
    'replica',
    ['--primary', `ws://127.0.0.1:${opts.primaryPort}/v1/replicate`, '--namespaces', 'app', '--data-dir', opts.dataDir, '--port', '0', '--reconnect-max-ms', '500'],
    opts.token,
  );
}

/** Waits until the replica has applied the primary's current head of "app"; returns that seq. */
export async function waitCaughtUp(primary: Daemon, replica: Daemon, timeoutMs: number): Promise<number> {
  const head = await primary.get('/v1/namespaces/app/head');
  if (head.status !== 200) throw new Error(`primary head: HTTP ${head.status} ${JSON.stringify(head.body)}`);
  const seq = head.body['seq'] as number;
  const generation = head.body['generation'] as string;
  const res = await replica.get(`/v1/namespaces/app/wait?seq=${seq}&generation=${generation}&timeoutMs=${timeoutMs}`);
  if (res.status !== 200) throw new Error(`replica did not reach seq ${seq}: HTTP ${res.status} ${JSON.stringify(res.body)}`);
  return seq;
}

/**
 * A TCP proxy that forwards to a port on loopback and can limit the
 * target → client direction (primary → replica) to a byte rate. It reads
 * from the target only as fast as the limit allows and honours the client's
 * back-pressure, so what it holds in memory is at most one chunk per
 * connection; the rest backs up into the sockets, as with a slow link.
 */
export class ThrottleProxy {
  readonly #server: Server;
  readonly #targetPort: number;
  readonly #pairs = new Set<[Socket, Socket]>();
  #bytesPerSec = 0;
  bytesDown = 0;
  connections = 0;

  private constructor(targetPort: number) {
    this.#targetPort = targetPort;
    this.#server = createServer((client) => this.#accept(client));
  }

  static async start(targetPort: number): Promise<ThrottleProxy> {
    const p = new ThrottleProxy(targetPort);
    await new Promise<void>((resolve) => p.#server.listen(0, '127.0.0.1', resolve));
    return p;
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  /** Limits target → client to bytesPerSec per connection (0 = unlimited). */
  throttle(bytesPerSec: number): void {
    this.#bytesPerSec = bytesPerSec;
  }

  /** Destroys every open connection, both sides (the ends see a dropped connection). */
  cut(): void {
    for (const [a, b] of this.#pairs) {
      a.destroy();
      b.destroy();
    }
    this.#pairs.clear();
  }

  async close(): Promise<void> {
    for (const [a, b] of this.#pairs) {
      a.destroy();
      b.destroy();
    }
    this.#pairs.clear();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(client: Socket): void {
    this.connections++;
    const upstream = connect(this.#targetPort, '127.0.0.1');
    const pair: [Socket, Socket] = [client, upstream];
    this.#pairs.add(pair);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      this.#pairs.delete(pair);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.on('data', (chunk: Buffer) => {
      if (!upstream.write(chunk)) {
        client.pause();
        upstream.once('drain', () => client.resume());
      }
    });
    let nextFree = performance.now();
    upstream.on('data', (chunk: Buffer) => {
      this.bytesDown += chunk.length;
      upstream.pause();
      let wait = 0;
      if (this.#bytesPerSec > 0) {
        const now = performance.now();
        nextFree = Math.max(nextFree, now);
        wait = nextFree - now;
        nextFree += (chunk.length / this.#bytesPerSec) * 1000;
      }
      const send = (): void => {
        if (client.destroyed) return;
        if (client.write(chunk)) upstream.resume();
        else client.once('drain', () => upstream.resume());
      };
      if (wait > 0) setTimeout(send, wait);
      else send();
    });
  }
}

export interface Rss {
  /** VmRSS in MB (10^6 bytes). */
  readonly mb: number;
  /** Its parts: anonymous memory (heap, buffers) and file-backed pages, MB. */
  readonly anonMb: number;
  readonly fileMb: number;
}

/** Resident set size of `pid` from /proc/<pid>/status. */
export function rss(pid: number): Rss {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): number => {
    const m = new RegExp(`${name}:\\s+(\\d+)\\s+kB`).exec(status);
    return m === null ? Number.NaN : (Number(m[1]) * 1024) / 1e6;
  };
  return { mb: field('VmRSS'), anonMb: field('RssAnon'), fileMb: field('RssFile') + field('RssShmem') };
}
