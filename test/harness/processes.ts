/**
 * Child processes for cross-process tests: spawn, read lines, kill -9, and
 * always clean up. Every child is tracked; `killAllChildren` (called from
 * afterEach through `useHarness`) SIGKILLs whatever is still running.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const live = new Set<Child>();

/** Absolute path of a compiled fixture script in test/dist/fixtures. */
export function fixturePath(name: string): string {
  return fileURLToPath(new URL(`../dist/fixtures/${name}.js`, import.meta.url));
}

export interface SpawnOptions {
  readonly env?: Readonly<Record<string, string>>;
  readonly cwd?: string;
  /** Text written to stdin, which is then closed. */
  readonly input?: string;
}

export interface ExitStatus {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export class Child {
  readonly process: ChildProcess;
  readonly label: string;
  readonly lines: string[] = [];
  readonly stderr: string[] = [];
  readonly exited: Promise<ExitStatus>;
  #waiters: { test: (line: string) => boolean; resolve: (line: string) => void }[] = [];

  constructor(command: string, args: readonly string[], options: SpawnOptions = {}) {
    this.label = `${command} ${args.join(' ')}`.slice(0, 200);
    this.process = spawn(command, args, {
      cwd: options.cwd,
      env: { ...process.env, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    live.add(this);
    this.exited = once(this.process, 'exit').then(([code, signal]) => {
      live.delete(this);
      return { code: code as number | null, signal: signal as NodeJS.Signals | null };
    });
    createInterface({ input: this.process.stdout! }).on('line', (line) => {
      this.lines.push(line);
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.test(line)) return true;
        w.resolve(line);
        return false;
      });
    });
    createInterface({ input: this.process.stderr! }).on('line', (line) => this.stderr.push(line));
    this.process.stdin!.on('error', () => {});
    if (options.input !== undefined) this.process.stdin!.end(options.input);
  }

  get pid(): number {
    return this.process.pid!;
  }

  /** Resolves with the first stdout line (past or future) matching `pattern`. */
  waitForLine(pattern: RegExp, timeoutMs = 30_000): Promise<string> {
    const seen = this.lines.find((l) => pattern.test(l));
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`no line matching ${pattern} from ${this.label} within ${timeoutMs} ms; stderr: ${this.stderr.slice(-5).join(' | ')}`));
      }, timeoutMs);
      const onExit = (): void => {
        clearTimeout(timer);
        reject(new Error(`${this.label} exited before printing ${pattern}; stderr: ${this.stderr.slice(-5).join(' | ')}`));
      };
      this.process.once('exit', onExit);
      this.#waiters.push({
        test: (line) => pattern.test(line),
        resolve: (line) => {
          clearTimeout(timer);
          this.process.off('exit', onExit);
          resolve(line);
        },
      });
    });
  }

  /** kill -9, then wait for the exit. */
  async kill9(): Promise<ExitStatus> {
    if (this.process.exitCode === null && this.process.signalCode === null) this.process.kill('SIGKILL');
    return this.exited;
  }

  /** SIGTERM; escalates to SIGKILL after `graceMs`. */
  async terminate(graceMs = 10_000): Promise<ExitStatus> {
    if (this.process.exitCode === null && this.process.signalCode === null) this.process.kill('SIGTERM');
    const timer = setTimeout(() => this.process.kill('SIGKILL'), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Waits for exit and throws unless the exit code is 0. */
  async succeeded(timeoutMs = 60_000): Promise<void> {
    const timer = setTimeout(() => this.process.kill('SIGKILL'), timeoutMs);
    const status = await this.exited;
    clearTimeout(timer);
    if (status.code !== 0) {
      throw new Error(`${this.label} failed (code ${status.code}, signal ${status.signal}): ${this.stderr.slice(-10).join('\n')}`);
    }
  }
}

/** Spawns a compiled fixture script with the current node binary. */
export function spawnFixture(name: string, args: readonly string[] = [], options: SpawnOptions = {}): Child {
  return new Child(process.execPath, [fixturePath(name), ...args], options);
}

export function spawnCommand(command: string, args: readonly string[], options: SpawnOptions = {}): Child {
  return new Child(command, args, options);
}

/** SIGKILLs every child still running and waits for them. */
export async function killAllChildren(): Promise<void> {
  await Promise.all([...live].map((c) => c.kill9()));
}

process.on('exit', () => {
  for (const c of live) c.process.kill('SIGKILL');
});
