import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger } from 'pino';

/**
 * The root pino logger for a daemon. JSON lines on stdout (or `destination`);
 * field names are stable and documented in docs/operations.md. Namespace and
 * connection loggers are children: `logger.child({ ns })`, `logger.child({ conn })`.
 */
export function createLogger(options: { level?: string; name: string } & Pick<LoggerOptions, 'base'>): Logger {
  return pino({ name: options.name, level: options.level ?? process.env['WALWIRE_LOG_LEVEL'] ?? 'info', base: options.base });
}

/** A logger that drops everything, for library users who pass none. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
