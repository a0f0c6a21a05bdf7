import type { FlagSpec } from '@walwire/runtime';

/** Every flag of `walwire-primary`, with its environment variable and default (see --help). */
export const PRIMARY_FLAGS: readonly FlagSpec[] = [
  { name: 'db', type: 'list', env: 'WALWIRE_DBS', description: 'Namespaces to serve as name=path pairs, comma-separated or repeated (e.g. --db app=/data/app.db). A missing database is created in WAL mode. Required.', default: [] },
  { name: 'token', type: 'string', required: true, description: 'Shared bearer token replicas and HTTP clients must present. Required.' },
  { name: 'data-dir', type: 'string', description: 'Directory for replication logs and snapshot images.', default: './walwire-primary-data' },
  { name: 'host', type: 'string', description: 'Listen address of the replication and HTTP endpoint.', default: '127.0.0.1' },
  { name: 'port', type: 'integer', description: 'Listen port; 0 picks a free one (logged as "listening").', default: 7400, min: 0, max: 65535 },
  { name: 'tls-cert', type: 'string', description: 'PEM certificate file; with --tls-key, serve wss:// and https://.', defaultLabel: 'none (plain ws://)' },
  { name: 'tls-key', type: 'string', description: 'PEM private key file for --tls-cert.', defaultLabel: 'none' },
  { name: 'heartbeat-interval-ms', type: 'integer', description: 'Interval between heartbeats to each replica.', default: 1000, min: 10 },
  { name: 'heartbeat-timeout-ms', type: 'integer', description: 'A replica silent this long is disconnected.', default: 5000, min: 20 },
  { name: 'checkpoint-pages', type: 'integer', description: 'WAL frames logged before a PASSIVE checkpoint is scheduled.', default: 1000, min: 1 },
  { name: 'wal-truncate-bytes', type: 'integer', description: 'WAL size above which the checkpoint uses TRUNCATE.', default: 67108864, min: 0 },
  { name: 'retention-max-bytes', type: 'integer', description: 'Most replication-log bytes kept per namespace; replicas further behind bootstrap.', default: 1073741824, min: 0 },
  { name: 'retention-max-age-ms', type: 'integer', description: 'Log segments older than this are dropped; replicas further behind bootstrap.', default: 604800000, min: 0 },
  { name: 'replica-ttl-ms', type: 'integer', description: 'A disconnected replica holds the log back for this long after it was last seen.', default: 3600000, min: 0 },
  { name: 'retention-interval-ms', type: 'integer', description: 'Interval between retention passes.', default: 30000, min: 10 },
  { name: 'segment-bytes', type: 'integer', description: 'Size at which the replication log starts a new segment (the unit of retention).', default: 67108864, min: 65536 },
  { name: 'log-cache-bytes', type: 'integer', description: 'Newest log records kept in memory per namespace, so replicas that keep up are streamed without reading the log back from disk.', default: 4194304, min: 0, max: 1073741824 },
  { name: 'snapshot-chunk-bytes', type: 'integer', description: 'Bytes per snapshot chunk sent to a bootstrapping replica (a crash mid-bootstrap re-fetches at most about one).', default: 4194304, min: 4096, max: 4194304 },
  { name: 'blob-chunk-bytes', type: 'integer', description: 'Blob content bytes per BLOB_CHUNK message.', default: 262144, min: 512, max: 4194304 },
  { name: 'max-blobs-in-flight', type: 'integer', description: 'Blobs streamed at once to one replica, per namespace (further blob events queue).', default: 4, min: 1, max: 1024 },
  { name: 'blob-window-bytes', type: 'integer', description: 'Blob content sent to one replica, per namespace, and not yet acknowledged as written; transactions overtake at most this much blob content.', default: 4194304, min: 512 },
  { name: 'max-blob-bytes', type: 'integer', description: 'Largest blob an upload may store; larger ones are refused with 413 WALWIRE_ERR_BLOB_TOO_LARGE.', default: 4294967296, min: 1 },
  { name: 'log-level', type: 'string', description: 'pino level: trace, debug, info, warn, error.', default: 'info' },
  { name: 'log-pretty', type: 'boolean', description: 'Human-readable log lines instead of JSON.', defaultLabel: 'on when stdout is a terminal' },
];
