import type { FlagSpec } from '@walwire/runtime';

/** Every flag of `walwire-replica`, with its environment variable and default (see --help). */
export const REPLICA_FLAGS: readonly FlagSpec[] = [
  { name: 'primary', type: 'string', env: 'WALWIRE_PRIMARY_URL', description: 'Replication URL of the primary (ws:// or wss://host:port/v1/replicate).', default: 'ws://127.0.0.1:7400/v1/replicate' },
  { name: 'token', type: 'string', required: true, description: 'Shared bearer token (the primary must be given the same one). Required.' },
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
  { name: 'blob-retry-delay-ms', type: 'integer', description: 'After a failed blob save, reconnect after this delay so the re-stream from the durable cursor saves it again (0 = at once).', default: 1000, min: 0 },
  { name: 'blob-stall-timeout-ms', type: 'integer', description: 'A streamed blob with no progress for this long counts as a failed save.', default: 60000, min: 10 },
  { name: 'log-level', type: 'string', description: 'pino level: trace, debug, info, warn, error.', default: 'info' },
  { name: 'log-pretty', type: 'boolean', description: 'Human-readable log lines instead of JSON.', defaultLabel: 'on when stdout is a terminal' },
];
