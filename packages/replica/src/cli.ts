#!/usr/bin/env node
/**
 * `walwire-replica`: runs a replica daemon until SIGTERM or SIGINT, then
 * shuts down gracefully (in-flight applies finish, cursors are written).
 * Every flag has an environment variable; `--help` lists them all.
 */
import { InvalidOptionError, type WalwireError } from '@walwire/protocol';
import { type FlagSpec, createLogger, formatHelp, parseFlags } from '@walwire/runtime';
import { ReplicaDaemon } from './replica-daemon.js';

export const REPLICA_FLAGS: readonly FlagSpec[] = [
  { name: 'primary', type: 'string', env: 'WALWIRE_PRIMARY_URL', description: 'Replication URL of the primary (ws:// or wss://host:port/v1/replicate).', default: 'ws://127.0.0.1:7400/v1/replicate' },
  { name: 'token', type: 'string', description: 'Shared bearer token (the primary must be given the same one). Required.' },
  { name: 'namespaces', type: 'list', description: 'Namespaces to replicate, comma-separated. Required.', default: [] },
  { name: 'data-dir', type: 'string', description: 'Directory for replica databases, cursors and staging.', default: './walwire-replica-data' },
  { name: 'host', type: 'string', description: 'Address of the HTTP endpoint (status, wait).', default: '127.0.0.1' },
  { name: 'port', type: 'integer', description: 'Port of the HTTP endpoint; 0 picks a free one.', default: 7401, min: 0, max: 65535 },
  { name: 'replica-id', type: 'string', description: 'Id reported to the primary.', defaultLabel: 'random, persisted in <data-dir>/replica-id' },
  { name: 'tls-ca', type: 'string', description: 'PEM file of the CA that signed the primary certificate (wss).', defaultLabel: 'system trust store' },
  { name: 'heartbeat-interval-ms', type: 'integer', description: 'Interval between heartbeats.', default: 1000, min: 10 },
  { name: 'heartbeat-timeout-ms', type: 'integer', description: 'Silence after which the primary is considered dead.', default: 5000, min: 20 },
  { name: 'reconnect-max-ms', type: 'integer', description: 'Largest delay between reconnect attempts (exponential backoff with jitter).', default: 5000, min: 1 },
  { name: 'stall-timeout-ms', type: 'integer', description: 'A connection paused for back-pressure that commits nothing for this long is reconnected.', default: 30000, min: 10 },
  { name: 'log-level', type: 'string', description: 'pino level: trace, debug, info, warn, error.', default: 'info' },
  { name: 'log-pretty', type: 'boolean', description: 'Human-readable log lines instead of JSON.', defaultLabel: 'on when stdout is a terminal' },
];

async function main(): Promise<void> {
  const { flags, help } = parseFlags(REPLICA_FLAGS, process.argv.slice(2));
  if (help) {
    console.log(formatHelp('walwire-replica [flags]', 'Replicates SQLite namespaces from a walwire primary into page-exact, readable copies.', REPLICA_FLAGS));
    return;
  }
  const logger = createLogger({ name: 'walwire-replica', level: flags['log-level'] as string, ...(flags['log-pretty'] !== undefined ? { pretty: flags['log-pretty'] as boolean } : {}) });
  if (!flags['token']) throw new InvalidOptionError('flag --token (or WALWIRE_TOKEN) is required');
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
    ...(flags['replica-id'] ? { replicaId: flags['replica-id'] as string } : {}),
    ...(flags['tls-ca'] ? { tlsCaPath: flags['tls-ca'] as string } : {}),
    logger,
  });
  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    daemon.stop().then(
      () => {
        logger.info('stopped');
        process.exit(0);
      },
      (err: unknown) => {
        logger.error({ err: (err as Error).message }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

main().catch((err: unknown) => {
  const e = err as WalwireError;
  console.error(`walwire-replica: ${e.code ? `${e.code}: ` : ''}${e.message}`);
  process.exit(2);
});
