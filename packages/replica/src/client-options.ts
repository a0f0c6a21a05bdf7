import { readFileSync } from 'node:fs';
import {
  InvalidOptionError,
  type ProtocolLimits,
  assertNamespace,
  checkIntegerOption,
  describe,
  resolveProtocolLimits,
} from '@walwire/protocol';

/** Options of a replica's connection to its primary (ReplicationClient). */
export interface ClientOptions {
  /** Primary replication endpoint, `ws://host:port` or `wss://host:port`. */
  readonly url: string;
  /** Shared bearer token, sent as `Authorization: Bearer <token>`. */
  readonly token: string;
  /** Namespaces to replicate; each must exist on the primary. */
  readonly namespaces: readonly string[];
  /**
   * Stable id reported to the primary (status, retention).
   * @default a random id persisted in `<dataDir>/replica-id`
   */
  readonly replicaId?: string;
  /**
   * PEM file of the CA that signed the primary's certificate, for wss.
   * @default the system trust store
   */
  readonly tlsCaPath?: string;
  /**
   * Interval between HEARTBEAT messages.
   * @default 1000
   */
  readonly heartbeatIntervalMs?: number;
  /**
   * The primary is declared dead when nothing arrives for this long.
   * @default 5000
   */
  readonly heartbeatTimeoutMs?: number;
  /**
   * Time allowed from TCP connect until WELCOME.
   * @default 10000
   */
  readonly handshakeTimeoutMs?: number;
  /**
   * First reconnect delay ceiling; doubles per failed attempt, with full jitter.
   * @default 100
   */
  readonly reconnectBaseMs?: number;
  /**
   * Largest reconnect delay.
   * @default 5000
   */
  readonly reconnectMaxMs?: number;
  /**
   * A connection paused for back-pressure that commits nothing for this long
   * is torn down and reconnected (stall watchdog).
   * @default 30000
   */
  readonly stallTimeoutMs?: number;
  /**
   * Page bytes handed to the appliers and not yet committed, across
   * namespaces, above which the socket is paused (receive back-pressure).
   * @default 67108864 (64 MiB)
   */
  readonly maxInFlightBytes?: number;
  /**
   * Largest single transaction assembled from TXN_PART messages.
   * @default 1073741824 (1 GiB)
   */
  readonly maxTxnBytes?: number;
  /**
   * ACKs of one namespace are coalesced to at most one per interval.
   * @default 20
   */
  readonly ackIntervalMs?: number;
  /**
   * After a failed blob save latches a gap, the connection is closed and
   * re-opened after this delay, so the re-stream from the durable seq saves
   * the blob again (0 = at once).
   * @default 1000
   */
  readonly blobRetryDelayMs?: number;
  /** Wire limits; see ProtocolLimits. */
  readonly limits?: Partial<ProtocolLimits>;
}

export interface ResolvedClientOptions {
  readonly url: string;
  readonly token: string;
  readonly namespaces: readonly string[];
  readonly replicaId: string | undefined;
  readonly tlsCa: Buffer | undefined;
  readonly heartbeatIntervalMs: number;
  readonly heartbeatTimeoutMs: number;
  readonly handshakeTimeoutMs: number;
  readonly reconnectBaseMs: number;
  readonly reconnectMaxMs: number;
  readonly stallTimeoutMs: number;
  readonly maxInFlightBytes: number;
  readonly maxTxnBytes: number;
  readonly ackIntervalMs: number;
  readonly blobRetryDelayMs: number;
  readonly limits: ProtocolLimits;
}

const HOUR = 3_600_000;

export function resolveClientOptions(o: ClientOptions): ResolvedClientOptions {
  if (typeof o.url !== 'string' || !/^wss?:\/\/[^\s/]+/.test(o.url)) {
    throw new InvalidOptionError(`option url must be a ws:// or wss:// URL, received ${describe(o.url)}`);
  }
  if (typeof o.token !== 'string' || o.token.length === 0) {
    throw new InvalidOptionError(`option token must be a non-empty string, received ${describe(o.token)}`);
  }
  if (!Array.isArray(o.namespaces) || o.namespaces.length === 0) {
    throw new InvalidOptionError(`option namespaces must list at least one namespace, received ${describe(o.namespaces)}`);
  }
  o.namespaces.forEach((ns) => assertNamespace(ns));
  let tlsCa: Buffer | undefined;
  if (o.tlsCaPath !== undefined) {
    try {
      tlsCa = readFileSync(o.tlsCaPath);
    } catch (err) {
      throw new InvalidOptionError(`option tlsCaPath: cannot read ${JSON.stringify(o.tlsCaPath)}: ${(err as Error).message}`);
    }
  }
  const heartbeatIntervalMs = checkIntegerOption('heartbeatIntervalMs', o.heartbeatIntervalMs ?? 1000, 10, HOUR);
  const heartbeatTimeoutMs = checkIntegerOption('heartbeatTimeoutMs', o.heartbeatTimeoutMs ?? 5000, 20, HOUR);
  if (heartbeatTimeoutMs <= heartbeatIntervalMs) {
    throw new InvalidOptionError(`option heartbeatTimeoutMs must exceed heartbeatIntervalMs ${heartbeatIntervalMs}, received ${heartbeatTimeoutMs}`);
  }
  return {
    url: o.url,
    token: o.token,
    namespaces: [...new Set(o.namespaces)],
    replicaId: o.replicaId,
    tlsCa,
    heartbeatIntervalMs,
    heartbeatTimeoutMs,
    handshakeTimeoutMs: checkIntegerOption('handshakeTimeoutMs', o.handshakeTimeoutMs ?? 10_000, 10, HOUR),
    reconnectBaseMs: checkIntegerOption('reconnectBaseMs', o.reconnectBaseMs ?? 100, 1, HOUR),
    reconnectMaxMs: checkIntegerOption('reconnectMaxMs', o.reconnectMaxMs ?? 5000, 1, HOUR),
    stallTimeoutMs: checkIntegerOption('stallTimeoutMs', o.stallTimeoutMs ?? 30_000, 10, HOUR),
    maxInFlightBytes: checkIntegerOption('maxInFlightBytes', o.maxInFlightBytes ?? 64 * 1024 * 1024, 65536, 2 ** 40),
    maxTxnBytes: checkIntegerOption('maxTxnBytes', o.maxTxnBytes ?? 1024 * 1024 * 1024, 65536, 2 ** 40),
    ackIntervalMs: checkIntegerOption('ackIntervalMs', o.ackIntervalMs ?? 20, 0, 60_000),
    blobRetryDelayMs: checkIntegerOption('blobRetryDelayMs', o.blobRetryDelayMs ?? 1000, 0, HOUR),
    limits: resolveProtocolLimits(o.limits),
  };
}
