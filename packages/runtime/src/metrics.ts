/**
 * A tiny metrics registry for `GET /metrics`: counters, gauges and
 * histograms, rendered in the Prometheus text exposition format 0.0.4.
 *
 * Values are either set by the code that observes an event (counters,
 * histograms) or read at scrape time from a callback (gauges and counters
 * whose truth lives elsewhere, such as lag or reconnects), so a scrape never
 * reports a value staler than the status endpoint would.
 *
 * Label values are escaped per the format (backslash, double quote,
 * newline); metric and label names are fixed by the code and checked once.
 */

export type Labels = Readonly<Record<string, string>>;

/** One sample a collect callback returns. */
export interface Sample {
  readonly labels?: Labels;
  readonly value: number;
}

type Kind = 'counter' | 'gauge' | 'histogram';

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function formatLabels(labels: Labels | undefined, extra?: readonly [string, string]): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(labels ?? {})) {
    if (!LABEL.test(k)) throw new Error(`invalid metric label name ${JSON.stringify(k)}`);
    parts.push(`${k}="${escapeLabel(v)}"`);
  }
  if (extra) parts.push(`${extra[0]}="${escapeLabel(extra[1])}"`);
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

function key(labels: Labels | undefined): string {
  return JSON.stringify(Object.entries(labels ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

interface Metric {
  readonly name: string;
  readonly help: string;
  readonly kind: Kind;
  render(): string[];
}

/** A monotonically increasing count, per label set. */
export class Counter implements Metric {
  readonly kind = 'counter' as const;
  readonly #values = new Map<string, { labels: Labels | undefined; value: number }>();

  constructor(
    readonly name: string,
    readonly help: string,
  ) {}

  inc(labels?: Labels, by = 1): void {
    if (!(by >= 0)) throw new Error(`counter ${this.name} cannot decrease (by ${by})`);
    const k = key(labels);
    const entry = this.#values.get(k);
    if (entry) entry.value += by;
    else this.#values.set(k, { labels, value: by });
  }

  get(labels?: Labels): number {
    return this.#values.get(key(labels))?.value ?? 0;
  }

  render(): string[] {
    return [...this.#values.values()].map((e) => `${this.name}${formatLabels(e.labels)} ${formatValue(e.value)}`);
  }
}

/** Samples read at scrape time from `collect` (a gauge, or a counter kept elsewhere). */
export class Collected implements Metric {
  constructor(
    readonly name: string,
    readonly help: string,
    readonly kind: 'counter' | 'gauge',
    readonly collect: () => readonly Sample[],
  ) {}

  render(): string[] {
    return this.collect().map((s) => `${this.name}${formatLabels(s.labels)} ${formatValue(s.value)}`);
  }
}

/** Observations counted into cumulative buckets (upper bounds, ascending), per label set. */
export class Histogram implements Metric {
  readonly kind = 'histogram' as const;
  readonly #buckets: readonly number[];
  readonly #series = new Map<string, { labels: Labels | undefined; counts: number[]; sum: number; count: number }>();

  constructor(
    readonly name: string,
    readonly help: string,
    buckets: readonly number[],
  ) {
    this.#buckets = [...buckets].sort((a, b) => a - b);
  }

  observe(value: number, labels?: Labels): void {
    const k = key(labels);
    let s = this.#series.get(k);
    if (s === undefined) this.#series.set(k, (s = { labels, counts: this.#buckets.map(() => 0), sum: 0, count: 0 }));
    for (let i = 0; i < this.#buckets.length; i++) if (value <= this.#buckets[i]!) s.counts[i]!++;
    s.sum += value;
    s.count++;
  }

  render(): string[] {
    const lines: string[] = [];
    for (const s of this.#series.values()) {
      this.#buckets.forEach((le, i) => lines.push(`${this.name}_bucket${formatLabels(s.labels, ['le', formatValue(le)])} ${s.counts[i]}`));
      lines.push(`${this.name}_bucket${formatLabels(s.labels, ['le', '+Inf'])} ${s.count}`);
      lines.push(`${this.name}_sum${formatLabels(s.labels)} ${formatValue(s.sum)}`);
      lines.push(`${this.name}_count${formatLabels(s.labels)} ${s.count}`);
    }
    return lines;
  }
}

/** Default buckets for durations in seconds: 0.5 ms … 10 s. */
export const DURATION_BUCKETS: readonly number[] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class MetricsRegistry {
  readonly #metrics = new Map<string, Metric>();

  counter(name: string, help: string): Counter {
    return this.#add(new Counter(name, help));
  }

  histogram(name: string, help: string, buckets: readonly number[] = DURATION_BUCKETS): Histogram {
    return this.#add(new Histogram(name, help, buckets));
  }

  /** A gauge whose samples are read at scrape time. */
  gauge(name: string, help: string, collect: () => readonly Sample[]): Collected {
    return this.#add(new Collected(name, help, 'gauge', collect));
  }

  /** A counter whose samples are read at scrape time (the count lives elsewhere). */
  collectedCounter(name: string, help: string, collect: () => readonly Sample[]): Collected {
    return this.#add(new Collected(name, help, 'counter', collect));
  }

  /** The exposition text (format 0.0.4), one HELP and TYPE line per metric. */
  render(): string {
    const out: string[] = [];
    for (const m of this.#metrics.values()) {
      out.push(`# HELP ${m.name} ${m.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`);
      out.push(`# TYPE ${m.name} ${m.kind}`);
      out.push(...m.render());
    }
    return `${out.join('\n')}\n`;
  }

  #add<M extends Metric>(metric: M): M {
    if (!NAME.test(metric.name)) throw new Error(`invalid metric name ${JSON.stringify(metric.name)}`);
    if (this.#metrics.has(metric.name)) throw new Error(`metric ${metric.name} registered twice`);
    this.#metrics.set(metric.name, metric);
    return metric;
  }
}

/** Content type of the text exposition format. */
export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/**
 * The process's own health, under the names Prometheus client libraries
 * use (process_*, nodejs_*), so stock dashboards and alerts apply: resident
 * memory, CPU time, start time, and the V8 heap and external memory. Read
 * at scrape time.
 */
export function registerProcessMetrics(m: MetricsRegistry): void {
  const startSeconds = Math.round(Date.now() / 1000 - process.uptime());
  m.gauge('process_resident_memory_bytes', 'Resident memory size in bytes.', () => [{ value: process.memoryUsage.rss() }]);
  m.collectedCounter('process_cpu_user_seconds_total', 'User CPU time spent in seconds (all threads).', () => [{ value: process.cpuUsage().user / 1e6 }]);
  m.collectedCounter('process_cpu_system_seconds_total', 'System CPU time spent in seconds (all threads).', () => [{ value: process.cpuUsage().system / 1e6 }]);
  m.gauge('process_start_time_seconds', 'Start time of the process since the Unix epoch in seconds.', () => [{ value: startSeconds }]);
  const memory = (pick: (u: NodeJS.MemoryUsage) => number) => (): readonly Sample[] => [{ value: pick(process.memoryUsage()) }];
  m.gauge('nodejs_heap_size_total_bytes', 'V8 heap size of the main thread in bytes.', memory((u) => u.heapTotal));
  m.gauge('nodejs_heap_size_used_bytes', 'V8 heap used by the main thread in bytes.', memory((u) => u.heapUsed));
  m.gauge('nodejs_external_memory_bytes', 'Memory of C++ objects bound to JavaScript (Buffers included) in bytes.', memory((u) => u.external));
}
