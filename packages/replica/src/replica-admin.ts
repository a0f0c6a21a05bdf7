/**
 * The replica's operations endpoints (the daemon checks the token first):
 *
 *   POST /v1/namespaces/:ns/integrity-check  {full?: boolean} → {ok, message, check}
 *   POST /v1/namespaces/:ns/reset-replication  400 WALWIRE_ERR_NOT_A_PRIMARY
 *   GET  /metrics                              Prometheus text format 0.0.4
 *
 * The integrity check opens its own read-only connection with a busy
 * timeout in a worker thread: the apply worker's EXCLUSIVE lock makes it
 * wait (never fail) while a batch commits, and the event loop keeps going.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { NotAPrimaryError } from '@walwire/protocol';
import { type Logger, METRICS_CONTENT_TYPE, MetricsRegistry, registerProcessMetrics, checkIntegrity, matchRoute, parseIntegrityBody, readJsonBody, sendFailure, sendJson } from '@walwire/runtime';
import type { ReplicationClient } from './primary-client.js';
import type { NamespaceStatus } from './replica-namespace.js';
import type { Replica } from './replica.js';

export class ReplicaAdmin {
  readonly metrics = new MetricsRegistry();
  readonly #replica: Replica;
  readonly #logger: Logger;
  /** Latest status of every open namespace, refreshed on each event and scrape. */
  #statuses: NamespaceStatus[] = [];

  constructor(replica: Replica, currentClient: () => ReplicationClient, logger: Logger) {
    this.#replica = replica;
    this.#logger = logger;
    const m = this.metrics;
    registerProcessMetrics(m);
    const txns = m.counter('walwire_replica_txns_total', 'Seqs (primary transaction groups) applied.');
    const bytes = m.counter('walwire_replica_txn_bytes_total', 'Page bytes applied.');
    const applySeconds = m.histogram('walwire_replica_apply_seconds', 'Time to apply one batch (journal, pages, fsyncs), lock waits included.');
    const lockWait = m.histogram('walwire_replica_apply_lock_wait_seconds', 'Time a batch waited for readers to release the database lock.');
    const installs = m.counter('walwire_replica_snapshot_installs_total', 'Snapshots installed (bootstrap, new generation, divergence).');
    const diverged = m.counter('walwire_replica_divergences_total', 'Checksum mismatches after an apply.');
    replica.on('applied', (e) => {
      txns.inc({ ns: e.ns }, e.txns);
      bytes.inc({ ns: e.ns }, e.bytes);
      applySeconds.observe(e.ms / 1000, { ns: e.ns });
      lockWait.observe(e.lockWaitMs / 1000, { ns: e.ns });
    });
    replica.on('installed', (e) => installs.inc({ ns: e.ns }));
    replica.on('diverged', (e) => diverged.inc({ ns: e.ns }));
    const each = (pick: (s: NamespaceStatus) => number) => () => this.#statuses.map((s) => ({ labels: { ns: s.ns }, value: pick(s) }));
    m.gauge('walwire_replica_applied_seq', 'Last seq committed in the replica database.', each((s) => s.position.appliedSeq));
    m.gauge('walwire_replica_durable_seq', 'Resume point: last seq whose blob events are durable.', each((s) => s.position.durableSeq));
    m.gauge('walwire_replica_queued_bytes', 'Page bytes received and waiting to be applied.', each((s) => s.queuedBytes));
    m.gauge('walwire_replica_last_apply_age_seconds', 'Seconds since the last batch was applied (-1 before the first).', each((s) => (s.lastApply ? (Date.now() - s.lastApply.at) / 1000 : -1)));
    m.gauge('walwire_replica_diverged', '1 while the namespace is diverged and waits for a snapshot.', each((s) => (s.diverged ? 1 : 0)));
    m.gauge('walwire_replica_connected', '1 while the connection to the primary is welcomed.', () => [{ value: currentClient().status.connected ? 1 : 0 }]);
    m.collectedCounter('walwire_replica_reconnects_total', 'Connections to the primary opened since start, minus the first.', () => [{ value: currentClient().status.reconnects }]);
    m.collectedCounter('walwire_replica_received_bytes_total', 'Bytes received from the primary.', () => [{ value: currentClient().status.bytesReceived }]);
    m.gauge('walwire_replica_bootstrap_staged_bytes', 'Snapshot bytes staged by bootstraps under way.', () =>
      currentClient().status.bootstrap.map((b) => ({ labels: { ns: b.ns }, value: b.stagedBytes })),
    );
    m.collectedCounter('walwire_replica_blob_failures_total', 'Blob saves that failed (I/O, size or checksum mismatch, stall); each latches a gap.', each((s) => s.blobs.failures));
    m.collectedCounter('walwire_replica_blobs_saved_total', 'Blobs saved durably and verified.', each((s) => s.blobs.saved));
    m.collectedCounter('walwire_replica_blob_saved_bytes_total', 'Content bytes of blobs saved.', each((s) => s.blobs.savedBytes));
    m.gauge('walwire_replica_blobs_in_flight', 'Blobs announced and not yet saved, skipped or failed.', each((s) => s.blobs.inFlight));
    m.gauge('walwire_replica_blob_in_flight_bytes', 'Content bytes received into temp files by blobs in flight.', each((s) => s.blobs.inFlightBytes));
    m.gauge('walwire_replica_blob_gap', '1 while a failed blob save holds the durable cursor (until the re-stream saves it).', each((s) => (s.blobs.gapSeq === null ? 0 : 1)));
    m.gauge('walwire_replica_blobs', 'Live blobs stored per namespace.', each((s) => s.blobs.count));
  }

  async #refresh(): Promise<void> {
    const out: NamespaceStatus[] = [];
    for (const name of this.#replica.namespaceNames) out.push((await this.#replica.namespace(name)).status);
    this.#statuses = out;
  }

  /** Routes of this module; false when the request is not one of them. */
  async handle(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const url = new URL(req.url ?? '/', 'http://x');
    try {
      if (req.method === 'GET' && url.pathname === '/metrics') {
        await this.#refresh();
        const text = this.metrics.render();
        res.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
        res.end(text);
        return true;
      }
      if (req.method !== 'POST') return false;
      const integrity = matchRoute('/v1/namespaces/:ns/integrity-check', url.pathname);
      if (integrity) {
        const { full } = parseIntegrityBody(await readJsonBody(req, 4096));
        const ns = await this.#replica.namespace(integrity['ns']!);
        const result = await checkIntegrity(ns.dbPath, { full, busyTimeoutMs: 10_000 });
        this.#logger.info({ ns: ns.name, ok: result.ok, check: result.check }, 'integrity check');
        sendJson(res, 200, { ns: ns.name, ...result });
        return true;
      }
      if (matchRoute('/v1/namespaces/:ns/reset-replication', url.pathname)) {
        throw new NotAPrimaryError('reset-replication runs on the primary; every replica of the namespace then bootstraps again on its own');
      }
      return false;
    } catch (err) {
      sendFailure(res, err);
      return true;
    }
  }
}
