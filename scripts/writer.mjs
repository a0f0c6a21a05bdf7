// A small writer service for the demo topology (docker-compose.yml and
// scripts/cluster.mjs): commits to the primary database at a steady rate
// with any-process SQLite access, as an application would. walwire is not in
// its write path.
//
// Env / flags: WALWIRE_WRITER_DB or --db PATH (required); --rate N commits
// per second (default 20); --seconds N stop after N seconds (default: run
// until SIGTERM). Prints one JSON line per second: {"msg":"writer","commits":N}.
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';

const args = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const dbPath = flag('db', process.env.WALWIRE_WRITER_DB);
const rate = Number(flag('rate', process.env.WALWIRE_WRITER_RATE ?? 20));
const seconds = Number(flag('seconds', 0));
if (!dbPath) {
  console.error('writer: --db PATH or WALWIRE_WRITER_DB is required');
  process.exit(2);
}

const db = new Database(dbPath);
db.pragma('busy_timeout = 5000');
db.pragma('journal_mode = WAL');
db.exec('CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, at INTEGER NOT NULL, payload BLOB NOT NULL)');
const insert = db.prepare('INSERT INTO events (at, payload) VALUES (?, ?)');
let commits = 0;
const started = Date.now();
const timer = setInterval(() => {
  insert.run(Date.now(), randomBytes(64 + Math.floor(Math.random() * 256)));
  commits++;
}, Math.max(1, Math.round(1000 / rate)));
const report = setInterval(() => console.log(JSON.stringify({ msg: 'writer', commits })), 1000);

function stop() {
  clearInterval(timer);
  clearInterval(report);
  db.close();
  console.log(JSON.stringify({ msg: 'writer stopped', commits, ms: Date.now() - started }));
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
if (seconds > 0) setTimeout(stop, seconds * 1000);
