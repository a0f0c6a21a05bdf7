/**
 * The primary's operations endpoints (the ReplicationServer authenticates
 * every request before these routes see it):
 *
 *   POST /v1/namespaces/:ns/integrity-check  {full?: boolean} → {ok, message, check}
 *   POST /v1/namespaces/:ns/reset-replication                → {ns, elapsed_ms, generation, previous}
 *   GET  /metrics                                            Prometheus text format 0.0.4
 *   POST /v1/namespaces  {name, path, create?}               → 201 {ns, generation, seq, checksum}
 *   DELETE /v1/namespaces/:ns                                → {ns, deleted: true}
 *
 * Metrics are counted from Primary events (records, generations) and read
 * at scrape time from the status of namespaces, checkpoints and replica
 * sessions, so /metrics and /v1/status never disagree.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { InvalidOptionError, describe } from '@walwire/protocol';
import { type Histogram, type Logger, METRICS_CONTENT_TYPE, MetricsRegistry, registerProcessMetrics, type Sample, checkIntegrity, matchRoute, parseIntegrityBody, readJsonBody, sendFailure, sendJson } from '@walwire/runtime';
import type { Primary } from './primary.js';
import type { ReplicationServer } from './replication-server.js';

/** Buckets of reset-replication durations, in seconds. */
const RESET_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export class PrimaryAdmin {
  readonly metrics = new MetricsRegistry();
  readonly #primary: Primary;
  readonly #resetSeconds: Histogram;
  readonly #server: ReplicationServer;
  readonly #logger: Logger;

  constructor(primary: Primary, server: ReplicationServer, logger: Logger) {
    this.#primary = primary;
    this.#logger = logger;
    this.#server = server;
    const m = this.metrics;
    registerProcessMetrics(m);
    const txns = m.counter('walwire_primary_txns_total', 'Committed SQLite transactions captured into the replication log.');
    const seqs = m.counter('walwire_primary_seqs_total', 'Seqs appended to the replication log (transaction groups and blob events).');
    const bytes = m.counter('walwire_primary_txn_bytes_total', 'Page bytes appended to the replication log.');
    const generations = m.counter('walwire_primary_generations_total', 'New generations started (first start, lost continuity, reset-replication).');
    this.#resetSeconds = m.histogram('walwire_primary_reset_replication_seconds', 'Duration of reset-replication on the primary.', RESET_BUCKETS);
    primary.on('record', ({ ns, record }) => {
      seqs.inc({ ns });
      if (record.kind !== 'txn') return;
      txns.inc({ ns }, record.commits);
      bytes.inc({ ns }, record.txn.pages.length * (record.txn.pages[0]?.data.length ?? 0));
    });
    primary.on('generation', ({ ns }) => generations.inc({ ns }));
    const running = () => primary.status().namespaces;
    m.gauge('walwire_primary_head_seq', 'Seq of the newest durable record of the current generation.', () => running().map((n) => ({ labels: { ns: n.name }, value: n.headSeq })));
    m.gauge('walwire_primary_wal_bytes', 'Size of the WAL file at the last read.', () => running().map((n) => ({ labels: { ns: n.name }, value: n.walBytes })));
    m.gauge('walwire_primary_buffer_bytes', 'Memory the namespace holds for reuse under load (read buffer, record arena, log cache); given back when idle.', () =>
      running().map((n) => ({ labels: { ns: n.name }, value: n.bufferBytes })),
    );
    m.gauge('walwire_primary_namespace_up', '1 when the namespace is running, 0 when failed or starting.', () =>
      running().map((n) => ({ labels: { ns: n.name }, value: n.state === 'running' ? 1 : 0 })),
    );
    m.collectedCounter('walwire_primary_checkpoints_total', 'Completed checkpoint procedures.', () =>
      running().map((n) => ({ labels: { ns: n.name }, value: n.checkpoint?.completed ?? 0 })),
    );
    m.gauge('walwire_primary_checkpoint_degraded', '1 while checkpoints of the namespace keep failing.', () =>
      running().map((n) => ({ labels: { ns: n.name }, value: n.checkpoint?.degraded === true ? 1 : 0 })),
    );
    const perNs = (pick: (b: { inFlight: number; queued: number }) => number) => () => {
      const sums = new Map<string, number>();
      for (const s of server.sessions) for (const n of s.namespaces) sums.set(n.ns, (sums.get(n.ns) ?? 0) + pick(n.blobs));
      return [...sums].map(([ns, value]) => ({ labels: { ns }, value }));
    };
    m.gauge('walwire_primary_blobs_streaming', 'Blobs whose content is streaming to connected replicas, summed over replicas.', perNs((b) => b.inFlight));
    m.gauge('walwire_primary_blobs_queued', 'Blob events announced to connected replicas whose content waits for a streaming slot.', perNs((b) => b.queued));
    m.gauge('walwire_primary_replicas_connected', 'Replica connections currently open.', () => [{ value: server.sessions.length }]);
    const perReplica = (pick: (n: { lagSeqs: number; lagBytes: number; lagMs: number; appliedSeq: number }) => number) => (): Sample[] =>
      server.sessions.flatMap((s) => s.namespaces.map((n) => ({ labels: { ns: n.ns, replica: s.replicaId ?? `conn-${s.id}` }, value: pick(n) })));
    m.gauge('walwire_primary_replica_applied_seq', 'Seq each replica acknowledged as applied.', perReplica((n) => n.appliedSeq));
    m.gauge('walwire_primary_replica_lag_seqs', 'Head seq minus the replica applied seq.', perReplica((n) => n.lagSeqs));
    m.gauge('walwire_primary_replica_lag_bytes', 'Page bytes sent to the replica and not yet acknowledged.', perReplica((n) => n.lagBytes));
    m.gauge('walwire_primary_replica_lag_seconds', 'Age of the oldest commit sent to the replica and not yet acknowledged.', perReplica((n) => n.lagMs / 1000));
    // Blob stores of the running namespaces; a namespace that failed to open has none.
    const stores = () =>
      primary.namespaces().flatMap((ns) => {
        try {
          return [{ ns, status: primary.blobs(ns).status() }];
        } catch {
          return [];
        }
      });
    m.gauge('walwire_primary_blobs_total', 'Live blobs in the namespace.', () => stores().map((s) => ({ labels: { ns: s.ns }, value: s.status.count })));
    m.gauge('walwire_primary_blob_bytes', 'Total bytes of live blobs in the namespace.', () => stores().map((s) => ({ labels: { ns: s.ns }, value: s.status.bytes })));
    m.collectedCounter('walwire_primary_blob_puts_total', 'Successful blob puts (each appended a BLOB_PUT event).', () =>
      stores().map((s) => ({ labels: { ns: s.ns }, value: s.status.puts })),
    );
    m.collectedCounter('walwire_primary_blob_deletes_total', 'Successful blob deletes (each appended a BLOB_DELETE event).', () =>
      stores().map((s) => ({ labels: { ns: s.ns }, value: s.status.deletes })),
    );
    m.collectedCounter('walwire_primary_blob_failures_total', 'Blob puts and deletes that failed, by error code.', () =>
      stores().flatMap((s) => Object.entries(s.status.failures).map(([code, value]) => ({ labels: { ns: s.ns, code }, value }))),
    );
  }

  /** Routes of this module; false when the request is not one of them. */
  async handle(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const url = new URL(req.url ?? '/', 'http://x');
    try {
      if (req.method === 'GET' && url.pathname === '/metrics') {
        const text = this.metrics.render();
        res.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
        res.end(text);
        return true;
      }
      if (req.method === 'DELETE') {
        const del = matchRoute('/v1/namespaces/:ns', url.pathname);
        if (!del) return false;
        // removeNamespace forgets the namespace before its first await, so
        // the sessions closed right after cannot resolve it again; closing
        // them before the log closes spares their senders a read error.
        // Replicas still listing it are refused at HELLO (remove it on
        // replicas first).
        const removal = this.#primary.removeNamespace(del['ns']!);
        this.#server.disconnectNamespace(del['ns']!, 'namespace deleted');
        await removal;
        sendJson(res, 200, { ns: del['ns'], deleted: true });
        return true;
      }
      if (req.method !== 'POST') return false;
      if (url.pathname === '/v1/namespaces') {
        const body = await readJsonBody(req, 4096);
        const name = body['name'];
        if (typeof name !== 'string') throw new InvalidOptionError(`field name must be a namespace name, received ${describe(name)}`);
        const head = await this.#primary.addNamespace(name, { path: body['path'] as string, ...(body['create'] === undefined ? {} : { create: body['create'] as boolean }) });
        this.#logger.info({ ns: name, path: body['path'], generation: head.generation }, 'namespace created');
        sendJson(res, 201, { ns: name, ...head });
        return true;
      }
      const integrity = matchRoute('/v1/namespaces/:ns/integrity-check', url.pathname);
      if (integrity) {
        const { full } = parseIntegrityBody(await readJsonBody(req, 4096));
        const ns = this.#primary.namespace(integrity['ns']!);
        const result = await checkIntegrity(ns.path, { full });
        this.#logger.info({ ns: ns.name, ok: result.ok, check: result.check }, 'integrity check');
        sendJson(res, 200, { ns: ns.name, ...result });
        return true;
      }
      const reset = matchRoute('/v1/namespaces/:ns/reset-replication', url.pathname);
      if (reset) {
        await readJsonBody(req, 4096);
        const result = await this.#primary.resetReplication(reset['ns']!);
        this.#resetSeconds.observe(result.elapsedMs / 1000, { ns: reset['ns']! });
        sendJson(res, 200, { ns: reset['ns'], elapsed_ms: Math.round(result.elapsedMs * 100) / 100, generation: result.generation, previous: result.previous });
        return true;
      }
      return false;
    } catch (err) {
      sendFailure(res, err);
      return true;
    }
  }
}
