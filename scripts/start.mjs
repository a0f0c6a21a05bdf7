// `npm start`: the main job on an embedded default. A primary and a replica
// run as two node processes on temp directories; this process plays the
// application: it writes a small load into the primary database and prints,
// once a second, the primary head, the replica position, the lag, and the
// read-your-writes latency (commit on the primary until a reader on the
// replica can see it). Ctrl-C stops everything and removes the temp data.
//
// Flags: --seconds N  stop by itself after N seconds (used by the test suite);
//        --rate N     commits per second (default 50).
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const seconds = arg('seconds', 0);
const rate = arg('rate', 50);
const root = fileURLToPath(new URL('..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'walwire-demo-'));
const token = randomBytes(16).toString('hex');
const dbPath = join(dir, 'app.db');
const children = [];

function daemon(name, script, flags) {
  const child = spawn(process.execPath, [join(root, script), ...flags, '--log-level', 'info', '--no-log-pretty'], {
    env: { ...process.env, WALWIRE_TOKEN: token },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  const lines = createInterface({ input: child.stdout });
  const ready = new Promise((resolve, reject) => {
    lines.on('line', (line) => {
      try {
        const rec = JSON.parse(line);
        if (rec.port !== undefined && /listening/.test(rec.msg)) resolve(rec.port);
        if (rec.level >= 40) console.error(`[${name}] ${rec.msg} ${rec.reason ?? rec.err ?? ''}`);
      } catch {
        console.log(`[${name}] ${line}`);
      }
    });
    child.stderr.on('data', (d) => process.stderr.write(`[${name}] ${d}`));
    child.on('exit', (code, signal) => {
      if (!stopping) reject(new Error(`${name} exited (code ${code}, signal ${signal})`));
    });
  });
  return ready;
}

async function getJson(port, path) {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { headers: { authorization: `Bearer ${token}` } });
  return res.json();
}

let stopping = false;
async function stop(code = 0) {
  if (stopping) return;
  stopping = true;
  clearInterval(ticker);
  clearInterval(writer);
  for (const c of children) c.kill('SIGTERM');
  await Promise.all(children.map((c) => new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', r)))));
  rmSync(dir, { recursive: true, force: true });
  console.log('\nstopped; temp data removed');
  process.exit(code);
}
process.on('SIGINT', () => void stop(0));
process.on('SIGTERM', () => void stop(0));

let ticker;
let writer;
try {
  const app = new Database(dbPath);
  app.pragma('journal_mode = WAL');
  app.exec('CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY, at INTEGER, body TEXT)');
  const primaryPort = await daemon('primary', 'packages/primary/dist/cli.js', ['--db', `app=${dbPath}`, '--data-dir', join(dir, 'primary'), '--port', '0']);
  const replicaPort = await daemon('replica', 'packages/replica/dist/cli.js', [
    '--primary', `ws://127.0.0.1:${primaryPort}/v1/replicate`, '--namespaces', 'app', '--data-dir', join(dir, 'replica'), '--port', '0',
  ]);
  console.log(`walwire demo in ${dir}`);
  console.log(`primary  ws://127.0.0.1:${primaryPort}/v1/replicate  (database ${dbPath})`);
  console.log(`replica  http://127.0.0.1:${replicaPort}/v1/status   (database ${join(dir, 'replica', 'app', 'db.sqlite')})`);
  console.log(`writing ${rate} commits/s; Ctrl-C to stop\n`);
  const insert = app.prepare('INSERT INTO events(at, body) VALUES (?, ?)');
  writer = setInterval(() => insert.run(Date.now(), randomBytes(48).toString('base64')), 1000 / rate);
  const replicaDb = join(dir, 'replica', 'app', 'db.sqlite');
  const started = Date.now();
  ticker = setInterval(async () => {
    try {
      const t0 = performance.now();
      insert.run(Date.now(), 'probe');
      const head = await getJson(primaryPort, '/v1/namespaces/app/head');
      const waited = await getJson(replicaPort, `/v1/namespaces/app/wait?seq=${head.seq}&timeoutMs=5000`);
      const ryw = performance.now() - t0;
      const status = await getJson(replicaPort, '/v1/status');
      const ns = status.namespaces.find((n) => n.ns === 'app');
      let rows = '?';
      try {
        const r = new Database(replicaDb, { readonly: true, timeout: 2000 });
        rows = r.prepare('SELECT count(*) AS n FROM events').get().n;
        r.close();
      } catch (err) {
        rows = `(${err.code ?? err.message})`;
      }
      const applied = waited.appliedSeq ?? ns?.position?.appliedSeq;
      console.log(
        `primary seq ${String(head.seq).padStart(6)} | replica applied ${String(applied).padStart(6)} durable ${String(ns?.position?.durableSeq).padStart(6)} | lag ${Math.max(0, head.seq - applied)} seqs | read-your-writes ${ryw.toFixed(1)} ms | replica rows ${rows} | reconnects ${status.connection.reconnects}`,
      );
      if (seconds > 0 && Date.now() - started >= seconds * 1000) await stop(0);
    } catch (err) {
      console.error(`status: ${err.message}`);
    }
  }, 1000);
} catch (err) {
  console.error(`walwire demo failed: ${err.message}`);
  await stop(1);
}
