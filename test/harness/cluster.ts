/**
 * Real daemons for end-to-end tests: walwire-primary and walwire-replica run
 * as separate node processes from the built CLIs, on port 0, with JSON logs.
 * The bound port is read from each daemon's "listening" log line.
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { DatabaseChecksum, parseDatabaseHeader } from '@walwire/protocol';
import { readDatabaseImage } from './convergence.js';
import { Child } from './processes.js';

const PRIMARY_CLI = fileURLToPath(new URL('../../packages/primary/dist/cli.js', import.meta.url));
const REPLICA_CLI = fileURLToPath(new URL('../../packages/replica/dist/cli.js', import.meta.url));

export const TEST_TOKEN = `test-${randomBytes(8).toString('hex')}`;

export interface DaemonProcess {
  readonly child: Child;
  readonly port: number;
  /** GET a JSON endpoint with the token. */
  get(path: string, token?: string): Promise<{ status: number; body: Record<string, unknown> }>;
}

async function start(cli: string, args: readonly string[], env: Record<string, string>, listening: RegExp): Promise<DaemonProcess> {
  const level = args.includes('--log-level') ? [] : ['--log-level', 'info'];
  const child = new Child(process.execPath, [cli, ...args, ...level, '--no-log-pretty'], {
    env: { WALWIRE_TOKEN: TEST_TOKEN, ...env },
  });
  const line = await child.waitForLine(listening, 30_000);
  const port = (JSON.parse(line) as { port: number }).port;
  return {
    child,
    port,
    async get(path, token = TEST_TOKEN) {
      const res = await fetch(`http://127.0.0.1:${port}${path}`, { headers: { authorization: `Bearer ${token}` } });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    },
  };
}

/** Starts walwire-primary serving `dbs` (name → path). */
export function startPrimaryProcess(options: { dataDir: string; dbs: Record<string, string>; args?: readonly string[]; env?: Record<string, string> }): Promise<DaemonProcess> {
  const db = Object.entries(options.dbs).map(([name, path]) => `${name}=${path}`).join(',');
  return start(PRIMARY_CLI, ['--db', db, '--data-dir', options.dataDir, '--port', '0', ...(options.args ?? [])], options.env ?? {}, /"msg":"listening"/);
}

/** Starts walwire-replica replicating `namespaces` from `url`. */
export function startReplicaProcess(options: { dataDir: string; url: string; namespaces: readonly string[]; args?: readonly string[]; env?: Record<string, string> }): Promise<DaemonProcess> {
  return start(
    REPLICA_CLI,
    ['--primary', options.url, '--namespaces', options.namespaces.join(','), '--data-dir', options.dataDir, '--port', '0', '--reconnect-max-ms', '500', ...(options.args ?? [])],
    options.env ?? {},
    /"msg":"replica http listening"/,
  );
}

export function replicationUrl(port: number): string {
  return `ws://127.0.0.1:${port}/v1/replicate`;
}

/** The database checksum of SQLite's own image of `dbPath`. */
export async function sqliteChecksum(dbPath: string): Promise<string> {
  const image = await readDatabaseImage(dbPath);
  const sum = new DatabaseChecksum();
  sum.addImage(image, parseDatabaseHeader(image).pageSize);
  return sum.value;
}

/**
 * Waits until the primary has logged everything SQLite holds in `dbPath`
 * (its head checksum equals the checksum of SQLite's image). Call with
 * writers stopped.
 */
export async function waitForCapture(primary: DaemonProcess, ns: string, dbPath: string, timeoutMs = 30_000): Promise<void> {
  const want = await sqliteChecksum(dbPath);
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    const head = await primary.get(`/v1/namespaces/${ns}/head`);
    last = head.body;
    if (head.status === 200 && head.body['checksum'] === want) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`primary head of ${ns} never reached SQLite's checksum ${want}; last head ${JSON.stringify(last)}`);
}

/**
 * Waits until the replica has applied the primary's current head of `ns`;
 * returns that seq. With `dbPath`, first waits until the primary has
 * captured everything in it (see waitForCapture).
 */
export async function waitForCatchUp(primary: DaemonProcess, replica: DaemonProcess, ns: string, dbPath?: string, timeoutMs = 30_000): Promise<number> {
  if (dbPath !== undefined) await waitForCapture(primary, ns, dbPath, timeoutMs);
  const head = await primary.get(`/v1/namespaces/${ns}/head`);
  if (head.status !== 200) throw new Error(`primary head of ${ns}: HTTP ${head.status} ${JSON.stringify(head.body)}`);
  const seq = head.body['seq'] as number;
  const generation = head.body['generation'] as string;
  const res = await replica.get(`/v1/namespaces/${ns}/wait?seq=${seq}&generation=${generation}&timeoutMs=${timeoutMs}`);
  if (res.status !== 200) throw new Error(`replica did not reach seq ${seq} of ${ns}: HTTP ${res.status} ${JSON.stringify(res.body)}`);
  return seq;
}

/**
 * Waits until the replica's durable seq reached the primary's current head
 * of `ns` (every blob event up to it saved); returns that seq.
 */
export async function waitForDurable(primary: DaemonProcess, replica: DaemonProcess, ns: string, timeoutMs = 60_000): Promise<number> {
  const head = await primary.get(`/v1/namespaces/${ns}/head`);
  if (head.status !== 200) throw new Error(`primary head of ${ns}: HTTP ${head.status} ${JSON.stringify(head.body)}`);
  const seq = head.body['seq'] as number;
  const res = await replica.get(`/v1/namespaces/${ns}/wait?seq=${seq}&generation=${String(head.body['generation'])}&durable=1&timeoutMs=${timeoutMs}`);
  if (res.status !== 200) throw new Error(`replica durable seq of ${ns} never reached ${seq}: HTTP ${res.status} ${JSON.stringify(res.body)}`);
  return seq;
}
