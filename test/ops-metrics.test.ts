/**
 * GET /metrics on both daemons: the text parses as Prometheus exposition
 * format 0.0.4 (a strict little parser below), every sample belongs to a
 * declared family, histograms are cumulative, and the values move with
 * writes, checkpoints and reconnects.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MetricsRegistry } from '@walwire/runtime';
import {
  TEST_TOKEN,
  freePort,
  makeTempDir,
  replicationUrl,
  runWriter,
  startPrimaryProcess,
  startReplicaProcess,
  useHarness,
  waitForCatchUp,
  type DaemonProcess,
} from './harness/index.js';

useHarness();

interface ParsedSample {
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly value: number;
}

interface Parsed {
  readonly types: Map<string, string>;
  readonly samples: ParsedSample[];
}

/** Parses text format 0.0.4 and throws on anything malformed. */
function parseExposition(text: string): Parsed {
  const types = new Map<string, string>();
  const helps = new Set<string>();
  const samples: ParsedSample[] = [];
  if (!text.endsWith('\n')) throw new Error('exposition must end with a newline');
  for (const line of text.slice(0, -1).split('\n')) {
    if (line.startsWith('# HELP ')) {
      const m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
      if (!m) throw new Error(`bad HELP line ${line}`);
      if (helps.has(m[1]!)) throw new Error(`second HELP for ${m[1]}`);
      helps.add(m[1]!);
      continue;
    }
    if (line.startsWith('# TYPE ')) {
      const m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
      if (!m) throw new Error(`bad TYPE line ${line}`);
      if (types.has(m[1]!)) throw new Error(`second TYPE for ${m[1]}`);
      types.set(m[1]!, m[2]!);
      continue;
    }
    if (line.startsWith('#') || line === '') continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`bad sample line ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    let rest = m[3] ?? '';
    while (rest !== '') {
      const l = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/.exec(rest);
      if (!l) throw new Error(`bad labels in ${JSON.stringify(line)}`);
      labels[l[1]!] = l[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
      rest = rest.slice(l[0].length);
    }
    const raw = m[4]!;
    const value = raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : raw === 'NaN' ? NaN : Number(raw);
    if (raw !== 'NaN' && Number.isNaN(value)) throw new Error(`bad value in ${JSON.stringify(line)}`);
    const name = m[1]!;
    const family = types.has(name) ? name : name.replace(/_(bucket|sum|count)$/, '');
    const type = types.get(family);
    if (type === undefined) throw new Error(`sample ${name} before its TYPE line`);
    if (family !== name && type !== 'histogram') throw new Error(`${name}: suffix on a ${type}`);
    if (type === 'counter' && !(value >= 0)) throw new Error(`${name}: negative counter`);
    samples.push({ name, labels, value });
  }
  // Histograms: buckets cumulative, +Inf equals _count.
  for (const [family, type] of types) {
    if (type !== 'histogram') continue;
    const series = new Map<string, ParsedSample[]>();
    for (const s of samples.filter((x) => x.name === `${family}_bucket`)) {
      const { le: _le, ...rest } = s.labels;
      const k = JSON.stringify(rest);
      series.set(k, [...(series.get(k) ?? []), s]);
    }
    for (const [k, buckets] of series) {
      for (let i = 1; i < buckets.length; i++) if (buckets[i]!.value < buckets[i - 1]!.value) throw new Error(`${family}${k}: buckets not cumulative`);
      const inf = buckets.at(-1)!;
      if (inf.labels['le'] !== '+Inf') throw new Error(`${family}${k}: last bucket is not +Inf`);
      const count = samples.find((x) => x.name === `${family}_count` && JSON.stringify(x.labels) === k);
      if (count?.value !== inf.value) throw new Error(`${family}${k}: _count ${count?.value} differs from +Inf bucket ${inf.value}`);
    }
  }
  return { types, samples };
}

async function scrape(d: DaemonProcess): Promise<Parsed> {
  const res = await fetch(`http://127.0.0.1:${d.port}/metrics`, { headers: { authorization: `Bearer ${TEST_TOKEN}` } });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseExposition(await res.text());
}

function value(p: Parsed, name: string, labels: Record<string, string> = {}): number {
  const s = p.samples.find((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v));
  if (s === undefined) throw new Error(`no sample ${name} ${JSON.stringify(labels)}`);
  return s.value;
}

describe('metrics registry', () => {
  it('renders counters, gauges and histograms that the parser accepts, with escaped labels', () => {
    const m = new MetricsRegistry();
    const c = m.counter('t_total', 'a counter');
    c.inc({ ns: 'a"b\\c\nd' }, 2);
    c.inc({ ns: 'a"b\\c\nd' });
    m.gauge('t_gauge', 'a gauge', () => [{ labels: { ns: 'x' }, value: -1.5 }, { value: 3 }]);
    const h = m.histogram('t_seconds', 'a histogram', [0.1, 1]);
    h.observe(0.05);
    h.observe(0.5);
    h.observe(7);
    const p = parseExposition(m.render());
    expect(value(p, 't_total', { ns: 'a"b\\c\nd' })).toBe(3);
    expect(value(p, 't_gauge', { ns: 'x' })).toBe(-1.5);
    expect(p.samples.filter((s) => s.name === 't_seconds_bucket').map((s) => [s.labels['le'], s.value])).toEqual([
      ['0.1', 1],
      ['1', 2],
      ['+Inf', 3],
    ]);
    expect(value(p, 't_seconds_sum')).toBeCloseTo(7.55);
    expect(() => m.counter('t_total', 'twice')).toThrow(/twice/);
    expect(() => m.counter('bad-name', 'x')).toThrow(/invalid/);
    expect(() => c.inc({}, -1)).toThrow(/decrease/);
  });
});

describe('GET /metrics', () => {
  it('parses on both daemons, and the values move with writes, checkpoints and reconnects', async () => {
    const dir = makeTempDir();
    const db = join(dir, 'app.db');
    await runWriter({ db }, { mode: 'load', txns: 20, rowsPerTxn: 5, payloadBytes: 200, ratePerSec: 0 });
    const port = await freePort();
    const primaryArgs = { dataDir: join(dir, 'p'), dbs: { app: db }, args: ['--port', String(port), '--checkpoint-pages', '50'] };
    let primary = await startPrimaryProcess(primaryArgs);
    const replica = await startReplicaProcess({ dataDir: join(dir, 'r'), url: replicationUrl(port), namespaces: ['app'] });
    await waitForCatchUp(primary, replica, 'app', db);
    const p0 = await scrape(primary);
    const r0 = await scrape(replica);
    for (const name of [
      'walwire_primary_txns_total',
      'walwire_primary_txn_bytes_total',
      'walwire_primary_head_seq',
      'walwire_primary_checkpoints_total',
      'walwire_primary_replica_lag_seqs',
      'walwire_primary_replica_lag_bytes',
      'walwire_primary_replica_lag_seconds',
      'walwire_primary_blob_failures_total',
      'walwire_replica_applied_seq',
      'walwire_replica_reconnects_total',
      'walwire_replica_apply_seconds',
      'walwire_replica_blob_failures_total',
    ]) {
      expect(p0.types.has(name) || r0.types.has(name), name).toBe(true);
    }
    // Process health under the standard client-library names, on both daemons.
    for (const [scraped, pid] of [[p0, primary.child.pid], [r0, replica.child.pid]] as const) {
      const rss = value(scraped, 'process_resident_memory_bytes');
      const proc = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
      expect(rss).toBeGreaterThan(proc / 2);
      expect(rss).toBeLessThan(proc * 2);
      expect(value(scraped, 'process_cpu_user_seconds_total')).toBeGreaterThan(0);
      expect(value(scraped, 'nodejs_heap_size_used_bytes')).toBeGreaterThan(0);
      expect(value(scraped, 'nodejs_heap_size_used_bytes')).toBeLessThanOrEqual(value(scraped, 'nodejs_heap_size_total_bytes'));
      expect(Math.abs(value(scraped, 'process_start_time_seconds') - Date.now() / 1000)).toBeLessThan(600);
    }
    expect(value(p0, 'walwire_primary_replicas_connected')).toBe(1);
    expect(value(r0, 'walwire_replica_connected')).toBe(1);
    expect(value(p0, 'walwire_primary_blob_failures_total')).toBe(0);

    await runWriter({ db }, { mode: 'load', txns: 300, rowsPerTxn: 5, payloadBytes: 500, ratePerSec: 0 });
    const seq = await waitForCatchUp(primary, replica, 'app', db);
    let p1 = await scrape(primary);
    for (let i = 0; i < 100 && value(p1, 'walwire_primary_checkpoints_total', { ns: 'app' }) === 0; i++) {
      await new Promise((r) => setTimeout(r, 50));
      p1 = await scrape(primary);
    }
    const r1 = await scrape(replica);
    expect(value(p1, 'walwire_primary_txns_total', { ns: 'app' })).toBeGreaterThanOrEqual(300);
    expect(value(p1, 'walwire_primary_txn_bytes_total', { ns: 'app' })).toBeGreaterThan(0);
    expect(value(p1, 'walwire_primary_head_seq', { ns: 'app' })).toBe(seq);
    expect(value(p1, 'walwire_primary_checkpoints_total', { ns: 'app' })).toBeGreaterThan(0);
    expect(value(r1, 'walwire_replica_applied_seq', { ns: 'app' })).toBe(seq);
    expect(value(r1, 'walwire_replica_txns_total', { ns: 'app' })).toBeGreaterThan(0);
    expect(value(r1, 'walwire_replica_apply_seconds_count', { ns: 'app' })).toBeGreaterThan(0);
    expect(value(r1, 'walwire_replica_txn_bytes_total', { ns: 'app' })).toBeGreaterThan(0);

    // A primary restart on the same port: the replica counts a reconnect.
    await primary.child.terminate();
    primary = await startPrimaryProcess(primaryArgs);
    await waitForCatchUp(primary, replica, 'app', db);
    const r2 = await scrape(replica);
    expect(value(r2, 'walwire_replica_reconnects_total')).toBeGreaterThanOrEqual(1);
    expect(value(r2, 'walwire_replica_received_bytes_total')).toBeGreaterThanOrEqual(value(r1, 'walwire_replica_received_bytes_total'));
  });
});
