#!/usr/bin/env node
/**
 * `walwire-primary`: runs a primary daemon until SIGTERM or SIGINT, then
 * shuts down gracefully (tailers drain, in-flight checkpoints finish, logs
 * are flushed and closed). Every flag has an environment variable; `--help`
 * lists them all.
 */
import { InvalidOptionError } from '@walwire/protocol';
import { runCommand, setupCommand, stopOnSignals } from '@walwire/runtime';
import { PRIMARY_FLAGS } from './primary-flags.js';
import { PrimaryDaemon } from './primary-daemon.js';


function parseDbs(pairs: readonly string[]): Record<string, { path: string }> {
  const out: Record<string, { path: string }> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0 || eq === pair.length - 1) throw new InvalidOptionError(`flag --db takes name=path, received ${JSON.stringify(pair)}`);
    out[pair.slice(0, eq)] = { path: pair.slice(eq + 1) };
  }
  if (Object.keys(out).length === 0) throw new InvalidOptionError('flag --db (or WALWIRE_DBS) must name at least one namespace, e.g. --db app=./app.db');
  return out;
}

async function main(): Promise<void> {
  const command = setupCommand('walwire-primary', 'Captures every committed transaction of SQLite databases in WAL mode and streams them to walwire replicas.', PRIMARY_FLAGS);
  if (command === null) return;
  const { flags, logger } = command;
  const daemon = await PrimaryDaemon.start({
    dataDir: flags['data-dir'] as string,
    namespaces: parseDbs(flags['db'] as string[]),
    host: flags['host'] as string,
    port: flags['port'] as number,
    token: flags['token'] as string,
    heartbeatIntervalMs: flags['heartbeat-interval-ms'] as number,
    heartbeatTimeoutMs: flags['heartbeat-timeout-ms'] as number,
    windowBytes: flags['send-window-bytes'] as number,
    stallTimeoutMs: flags['stall-timeout-ms'] as number,
    checkpointPages: flags['checkpoint-pages'] as number,
    walTruncateBytes: flags['wal-truncate-bytes'] as number,
    segmentBytes: flags['segment-bytes'] as number,
    logCacheBytes: flags['log-cache-bytes'] as number,
    snapshotChunkBytes: flags['snapshot-chunk-bytes'] as number,
    blobChunkBytes: flags['blob-chunk-bytes'] as number,
    maxBlobsInFlight: flags['max-blobs-in-flight'] as number,
    blobWindowBytes: flags['blob-window-bytes'] as number,
    blobReadRetryMs: flags['blob-read-retry-ms'] as number,
    maxBlobBytes: flags['max-blob-bytes'] as number,
    namespaceRetryMs: flags['namespace-retry-ms'] as number,
    retention: {
      maxBytes: flags['retention-max-bytes'] as number,
      maxAgeMs: flags['retention-max-age-ms'] as number,
      replicaTtlMs: flags['replica-ttl-ms'] as number,
      intervalMs: flags['retention-interval-ms'] as number,
    },
    ...(flags['tls-cert'] ? { tlsCertPath: flags['tls-cert'] as string } : {}),
    ...(flags['tls-key'] ? { tlsKeyPath: flags['tls-key'] as string } : {}),
    logger,
  });
  stopOnSignals(logger, () => daemon.stop());
}

runCommand('walwire-primary', main);
