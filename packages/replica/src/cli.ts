#!/usr/bin/env node
/**
 * `walwire-replica`: runs a replica daemon until SIGTERM or SIGINT, then
 * shuts down gracefully (in-flight applies finish, cursors are written).
 * Every flag has an environment variable; `--help` lists them all.
 */
import { runCommand, setupCommand, stopOnSignals } from '@walwire/runtime';
import { REPLICA_FLAGS } from './replica-flags.js';
import { ReplicaDaemon } from './replica-daemon.js';


async function main(): Promise<void> {
  const command = setupCommand('walwire-replica', 'Replicates SQLite namespaces from a walwire primary into page-exact, readable copies.', REPLICA_FLAGS);
  if (command === null) return;
  const { flags, logger } = command;
  const daemon = await ReplicaDaemon.start({
    url: flags['primary'] as string,
    token: flags['token'] as string,
    namespaces: flags['namespaces'] as string[],
    dataDir: flags['data-dir'] as string,
    httpHost: flags['host'] as string,
    httpPort: flags['port'] as number,
    heartbeatIntervalMs: flags['heartbeat-interval-ms'] as number,
    heartbeatTimeoutMs: flags['heartbeat-timeout-ms'] as number,
    reconnectMaxMs: flags['reconnect-max-ms'] as number,
    stallTimeoutMs: flags['stall-timeout-ms'] as number,
    blobRetryDelayMs: flags['blob-retry-delay-ms'] as number,
    blobStallTimeoutMs: flags['blob-stall-timeout-ms'] as number,
    ...(flags['replica-id'] ? { replicaId: flags['replica-id'] as string } : {}),
    ...(flags['tls-ca'] ? { tlsCaPath: flags['tls-ca'] as string } : {}),
    logger,
  });
  if (process.stderr.isTTY) {
    // A progress bar per bootstrapping namespace, redrawn in place on the terminal.
    daemon.client.on('bootstrap', (p) => {
      const width = 30;
      const filled = Math.round((p.percent / 100) * width);
      const eta = p.etaMs === null ? '?' : `${Math.ceil(p.etaMs / 1000)}s`;
      const line = `bootstrap ${p.ns} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${p.percent.toFixed(1)}% ${(p.stagedBytes / 1e6).toFixed(1)}/${(p.totalBytes / 1e6).toFixed(1)} MB ${(p.bytesPerSec / 1e6).toFixed(1)} MB/s ETA ${eta}`;
      process.stderr.write(`\r${line}\x1b[K${p.percent >= 100 ? '\n' : ''}`);
    });
  }
  stopOnSignals(logger, () => daemon.stop());
}

runCommand('walwire-replica', main);
