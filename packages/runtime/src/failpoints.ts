/**
 * Failpoints: named places in the code that tests arm so they throw, delay
 * or kill the process there (design.md, "Fault injection vocabulary").
 *
 * Arm through the environment, read once at first use:
 *
 *     WALWIRE_FAILPOINTS="replica.apply.mid-pages=kill@3,replica.blob.save=throw*1"
 *
 * or in-process with `armFailpoint`. An action is `kill`, `throw`,
 * `errno(CODE)`, `delay(MS)` or `off`, optionally followed by one modifier:
 *   `@N`  fire only on the Nth hit (1-based);
 *   `*N`  fire on the first N hits;
 *   `%P`  fire with probability P (0–1) on each hit.
 * `kill` is SIGKILL of the whole process (worker threads included), the
 * in-process equivalent of `kill -9` at that instruction. `throw` throws
 * FailpointError (code `WALWIRE_ERR_FAILPOINT`), which no caller treats as
 * transient. `errno(CODE)` throws what a failed fs call throws instead: an
 * Error with `code` CODE (an errno name of this platform, e.g. `EIO`), the
 * matching negative `errno` and `syscall` 'failpoint', so code that retries
 * transient errnos (the primary's blob reads) can be driven through its
 * retry path.
 *
 * Unarmed, `failpoint()` is one boolean check. Nothing fires unless a test
 * armed it, so production never sees FailpointError.
 */
import { constants } from 'node:os';
import { FailpointError, InvalidOptionError } from '@walwire/protocol';

type Action = { kind: 'kill' } | { kind: 'throw' } | { kind: 'errno'; code: string; errno: number } | { kind: 'delay'; ms: number };

interface Armed {
  readonly action: Action;
  readonly at?: number;
  readonly first?: number;
  readonly probability?: number;
  hits: number;
}

const armed = new Map<string, Armed>();
let loadedEnv = false;
let anyArmed = false;

function parseSpec(name: string, text: string): Armed | undefined {
  const m = /^(kill|throw|off|delay\((\d+)\)|errno\(([A-Z0-9]+)\))(?:(@|\*|%)([0-9.]+))?$/.exec(text.trim());
  if (m === null) {
    throw new InvalidOptionError(`failpoint ${name}: action must be kill, throw, errno(CODE), off or delay(MS) with an optional @N, *N or %P, received ${JSON.stringify(text)}`);
  }
  if (m[1] === 'off') return undefined;
  let action: Action;
  if (m[3] !== undefined) {
    // Refused at arming, not at the first hit: a misspelt code would
    // otherwise surface as a non-transient error and test the wrong path.
    const errno = (constants.errno as Readonly<Record<string, number>>)[m[3]];
    if (errno === undefined) throw new InvalidOptionError(`failpoint ${name}: ${JSON.stringify(m[3])} is not an errno name of this platform (e.g. EIO, EAGAIN), received ${JSON.stringify(text)}`);
    action = { kind: 'errno', code: m[3], errno: -errno };
  } else {
    action = m[1] === 'kill' ? { kind: 'kill' } : m[1] === 'throw' ? { kind: 'throw' } : { kind: 'delay', ms: Number(m[2]) };
  }
  const n = m[5] === undefined ? undefined : Number(m[5]);
  return {
    action,
    hits: 0,
    ...(m[4] === '@' ? { at: n } : {}),
    ...(m[4] === '*' ? { first: n } : {}),
    ...(m[4] === '%' ? { probability: n } : {}),
  };
}

function loadEnv(): void {
  loadedEnv = true;
  const text = process.env['WALWIRE_FAILPOINTS'];
  if (!text) return;
  for (const part of text.split(',')) {
    if (part.trim() === '') continue;
    const eq = part.indexOf('=');
    if (eq < 0) throw new InvalidOptionError(`WALWIRE_FAILPOINTS entry ${JSON.stringify(part)} is not name=action`);
    armFailpoint(part.slice(0, eq).trim(), part.slice(eq + 1));
  }
}

/** Arms (or with `off`, disarms) a failpoint in this process. */
export function armFailpoint(name: string, spec: string): void {
  if (!loadedEnv) loadEnv();
  const parsed = parseSpec(name, spec);
  if (parsed === undefined) armed.delete(name);
  else armed.set(name, parsed);
  anyArmed = armed.size > 0;
}

/** Disarms every failpoint (tests call this between cases). */
export function disarmAllFailpoints(): void {
  loadedEnv = true;
  armed.clear();
  anyArmed = false;
}

function shouldFire(name: string): Armed | undefined {
  if (!loadedEnv) loadEnv();
  if (!anyArmed) return undefined;
  const fp = armed.get(name);
  if (fp === undefined) return undefined;
  fp.hits++;
  if (fp.at !== undefined && fp.hits !== fp.at) return undefined;
  if (fp.first !== undefined && fp.hits > fp.first) return undefined;
  if (fp.probability !== undefined && Math.random() >= fp.probability) return undefined;
  return fp;
}

function fire(name: string, fp: Armed): void {
  if (fp.action.kind === 'kill') {
    process.kill(process.pid, 'SIGKILL');
    // SIGKILL is not delivered synchronously; never run past the failpoint.
    for (;;) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000);
  }
  if (fp.action.kind === 'throw') throw new FailpointError(`failpoint ${name} fired (hit ${fp.hits})`);
  if (fp.action.kind === 'errno') {
    // Shaped like Node's own fs errors (message `CODE: …`, code, errno, syscall).
    const { code, errno } = fp.action;
    throw Object.assign(new Error(`${code}: failpoint ${name} fired (hit ${fp.hits})`), { code, errno, syscall: 'failpoint' });
  }
}

/** A synchronous failpoint: `kill`, `throw` and `errno` fire here; `delay` blocks the thread. */
export function failpoint(name: string): void {
  const fp = shouldFire(name);
  if (fp === undefined) return;
  if (fp.action.kind === 'delay') {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, fp.action.ms);
    return;
  }
  fire(name, fp);
}

/** An asynchronous failpoint: like `failpoint`, but `delay` waits without blocking. */
export async function failpointAsync(name: string): Promise<void> {
  const fp = shouldFire(name);
  if (fp === undefined) return;
  if (fp.action.kind === 'delay') {
    const ms = fp.action.ms;
    await new Promise((resolve) => setTimeout(resolve, ms));
    return;
  }
  fire(name, fp);
}
