// The docker-compose.yml topology as plain processes (for machines without
// Docker, and for the test suite): one walwire-primary serving namespace
// "app", two walwire-replica processes, and the writer service
// (scripts/writer.mjs) committing into the primary database.
//
// Flags: --dir PATH     data root (default: a temp dir, removed at the end
//                       unless --keep); layout: primary/app.db,
//                       primary/data, replica1, replica2
//        --seconds N    run N seconds, then stop the writer, wait until both
//                       replicas applied the primary's head, print
//                       {"msg":"converged",...} and stop everything (exit 0;
//                       exit 1 if they did not converge in 30 s)
//        --rate N       writer commits per second (default 50)
//        --keep         keep the data directory
// Without --seconds it runs until Ctrl-C, printing the status every second.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const seconds = Number(flag('seconds', 0));
const rate = Number(flag('rate', 50));
const keep = args.includes('--keep') || flag('dir', undefined) !== undefined;
const root = fileURLToPath(new URL('..', import.meta.url));
const dir = flag('dir', undefined) ?? mkdtempSync(join(tmpdir(), 'walwire-cluster-'));
const token = process.env.WALWIRE_TOKEN ?? randomBytes(16).toString('hex');
const dbPath = join(dir, 'primary', 'app.db');
mkdirSync(join(dir, 'primary'), { recursive: true });
const children = new Map();
let stopping = false;

function run(name, script, flags, readyPattern) {
  const child = spawn(process.execPath, [join(root, script), ...flags], {
    env: { ...process.env, WALWIRE_TOKEN: token, WALWIRE_LOG_PRETTY: 'false' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.set(name, child);
  const lines = createInterface({ input: child.stdout });
  return new Promise((resolve, reject) => {
    lines.on('line', (line) => {
      let rec;
      try {
        rec = JSON.parse(line);
      } catch {
        console.log(`[${name}] ${line}`);
        return;
      }
      if (readyPattern !== undefined && readyPattern.test(rec.msg ?? '')) resolve(rec.port);
      if (rec.level >= 40) console.error(`[${name}] ${rec.msg} ${rec.reason ?? rec.err ?? ''}`);
    });
    child.stderr.on('data', (d) => process.stderr.write(`[${name}] ${d}`));
    child.on('exit', (code, signal) => {
      if (!stopping) reject(new Error(`${name} exited (code ${code}, signal ${signal})`));
    });
    if (readyPattern === undefined) resolve(undefined);
  });
}

async function get(port, path) {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, body: await res.json() };
}

async function stop(code) {
  stopping = true;
  for (const c of children.values()) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  await Promise.all([...children.values()].map((c) => new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', r)))));
  if (!keep) rmSync(dir, { recursive: true, force: true });
  process.exit(code);
}
process.on('SIGINT', () => void stop(0));
process.on('SIGTERM', () => void stop(0));

try {
  // The writer creates the database first, as the application would.
  await run('writer', 'scripts/writer.mjs', ['--db', dbPath, '--rate', String(rate)]);
  await new Promise((r) => setTimeout(r, 200));
  const primaryPort = await run(
    'primary',
    'packages/primary/dist/cli.js',
    ['--db', `app=${dbPath}`, '--data-dir', join(dir, 'primary', 'data'), '--port', '0', '--log-level', 'info'],
    /^listening$/,
  );
  const url = `ws://127.0.0.1:${primaryPort}/v1/replicate`;
  const replicaPorts = await Promise.all(
    ['replica1', 'replica2'].map((name) =>
      run(name, 'packages/replica/dist/cli.js', ['--primary', url, '--namespaces', 'app', '--data-dir', join(dir, name), '--port', '0', '--replica-id', name, '--log-level', 'info'], /^replica http listening$/),
    ),
  );
  console.log(JSON.stringify({ msg: 'cluster running', dir, primaryPort, replicaPorts }));
  const started = Date.now();
  for (;;) {
    await new Promise((r) => setTimeout(r, 1000));
    const head = (await get(primaryPort, '/v1/namespaces/app/head')).body;
    const applied = [];
    for (const port of replicaPorts) applied.push((await get(port, '/v1/status')).body.namespaces[0]?.appliedSeq ?? 0);
    console.log(JSON.stringify({ msg: 'status', headSeq: head.seq, appliedSeqs: applied }));
    if (seconds > 0 && Date.now() - started >= seconds * 1000) break;
  }
  // Stop the writer, then wait for both replicas to reach the final head.
  const writer = children.get('writer');
  writer.kill('SIGTERM');
  await new Promise((r) => (writer.exitCode !== null ? r() : writer.once('exit', r)));
  // The primary logs the last commits within its poll interval.
  await new Promise((r) => setTimeout(r, 500));
  const head = (await get(primaryPort, '/v1/namespaces/app/head')).body;
  const positions = [];
  for (const port of replicaPorts) {
    const res = await get(port, `/v1/namespaces/app/wait?seq=${head.seq}&generation=${head.generation}&timeoutMs=30000`);
    if (res.status !== 200) throw new Error(`replica on port ${port} did not converge: ${JSON.stringify(res.body)}`);
    positions.push(res.body);
  }
  const converged = positions.every((p) => p.checksum === head.checksum && p.appliedSeq === head.seq);
  console.log(JSON.stringify({ msg: converged ? 'converged' : 'not converged', head, replicas: positions, dir }));
  await stop(converged ? 0 : 1);
} catch (err) {
  console.error(`cluster: ${err.message}`);
  await stop(1);
}
