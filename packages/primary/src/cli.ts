#!/usr/bin/env node
/**
 * `walwire-primary`: runs a primary daemon until SIGTERM or SIGINT, then
 * shuts down gracefully (tailers drain, in-flight checkpoints finish, logs
 * are flushed and closed). Every flag has an environment variable; `--help`
 * lists them all.
 */
import { InvalidOptionError, WalwireError } from '@walwire/protocol';
import { type FlagSpec, createLogger, formatHelp, parseFlags } from '@walwire/runtime';
import { PrimaryDaemon } from './primary-daemon.js';

export const PRIMARY_FLAGS: readonly FlagSpec[] = [
  { name: 'db', type: 'list', env: 'WALWIRE_DBS', description: 'Namespaces to serve as name=path pairs, comma-separated or repeated (e.g. --db app=/data/app.db). A missing database is created in WAL mode. Required.', default: [] },
  { name: 'token', type: 'string', description: 'Shared bearer token replicas and HTTP clients must present. Required.' },
  { name: 'data-dir', type: 'string', description: 'Directory for replication logs and snapshot images.', default: './walwire-primary-data' },
  { name: 'host', type: 'string', description: 'Listen address of the replication and HTTP endpoint.', default: '127.0.0.1' },
  { name: 'port', type: 'integer', description: 'Listen port; 0 picks a free one (logged as "listening").', default: 7400, min: 0, max: 65535 },
  { name: 'tls-cert', type: 'string', description: 'PEM certificate file; with --tls-key, serve wss:// and https://.', defaultLabel: 'none (plain ws://)' },
  { name: 'tls-key', type: 'string', description: 'PEM private key file for --tls-cert.', defaultLabel: 'none' },
  { name: 'heartbeat-interval-ms', type: 'integer', description: 'Interval between heartbeats to each replica.', default: 1000, min: 10 },
  { name: 'heartbeat-timeout-ms', type: 'integer', description: 'A replica silent this long is disconnected.', default: 5000, min: 20 },
  { name: 'checkpoint-pages', type: 'integer', description: 'WAL frames logged before a PASSIVE checkpoint is scheduled.', default: 1000, min: 1 },
  { name: 'wal-truncate-bytes', type: 'integer', description: 'WAL size above which the checkpoint uses TRUNCATE.', default: 67108864, min: 0 },
  { name: 'log-level', type: 'string', description: 'pino level: trace, debug, info, warn, error.', default: 'info' },
  { name: 'log-pretty', type: 'boolean', description: 'Human-readable log lines instead of JSON.', defaultLabel: 'on when stdout is a terminal' },
];

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
  const { flags, help } = parseFlags(PRIMARY_FLAGS, process.argv.slice(2));
  if (help) {
    console.log(formatHelp('walwire-primary [flags]', 'Captures every committed transaction of SQLite databases in WAL mode and streams them to walwire replicas.', PRIMARY_FLAGS));
    return;
  }
  const logger = createLogger({ name: 'walwire-primary', level: flags['log-level'] as string, ...(flags['log-pretty'] !== undefined ? { pretty: flags['log-pretty'] as boolean } : {}) });
  if (!flags['token']) throw new InvalidOptionError('flag --token (or WALWIRE_TOKEN) is required');
  const daemon = await PrimaryDaemon.start({
    dataDir: flags['data-dir'] as string,
    namespaces: parseDbs(flags['db'] as string[]),
    host: flags['host'] as string,
    port: flags['port'] as number,
    token: flags['token'] as string,
    heartbeatIntervalMs: flags['heartbeat-interval-ms'] as number,
    heartbeatTimeoutMs: flags['heartbeat-timeout-ms'] as number,
    checkpointPages: flags['checkpoint-pages'] as number,
    walTruncateBytes: flags['wal-truncate-bytes'] as number,
    ...(flags['tls-cert'] ? { tlsCertPath: flags['tls-cert'] as string } : {}),
    ...(flags['tls-key'] ? { tlsKeyPath: flags['tls-key'] as string } : {}),
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
  console.error(`walwire-primary: ${e.code ? `${e.code}: ` : ''}${e.message}`);
  process.exit(2);
});
