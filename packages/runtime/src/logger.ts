import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino';

export type { Logger } from 'pino';

const LEVEL_NAMES: Readonly<Record<number, string>> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO ', 40: 'WARN ', 50: 'ERROR', 60: 'FATAL' };

/**
 * One line per record for humans: time, level, component, message, then the
 * remaining fields as key=value. Used when stdout is a terminal; pipes and
 * files get pino's JSON lines.
 */
export function prettyDestination(out: NodeJS.WritableStream = process.stdout): DestinationStream {
  return {
    write(line: string): void {
      let record: Record<string, unknown>;
      try {
        record = JSON.parse(line) as Record<string, unknown>;
      } catch {
        out.write(line);
        return;
      }
      const { level, time, msg, name, pid: _pid, hostname: _host, ...rest } = record;
      const fields = Object.entries(rest)
        .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
        .join(' ');
      const when = new Date(typeof time === 'number' ? time : Date.now()).toISOString().slice(11, 23);
      out.write(`${when} ${LEVEL_NAMES[level as number] ?? String(level)} ${String(name ?? '')}: ${String(msg ?? '')}${fields ? `  ${fields}` : ''}\n`);
    },
  };
}

/**
 * The root pino logger for a daemon. JSON lines on stdout, or pretty lines
 * when `pretty` (default: stdout is a TTY). Field names are stable and
 * documented in docs/operations.md. Namespace and connection loggers are
 * children: `logger.child({ ns })`, `logger.child({ conn })`.
 */
export function createLogger(
  options: { level?: string; name: string; pretty?: boolean; destination?: DestinationStream } & Pick<LoggerOptions, 'base'>,
): Logger {
  const pretty = options.pretty ?? process.stdout.isTTY === true;
  const destination = options.destination ?? (pretty ? prettyDestination() : undefined);
  const config: LoggerOptions = {
    name: options.name,
    level: options.level ?? process.env['WALWIRE_LOG_LEVEL'] ?? 'info',
    base: options.base,
  };
  return destination ? pino(config, destination) : pino(config);
}

/** A logger that drops everything, for library users who pass none. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
