import type { Logger } from 'pino';
import { InvalidOptionError } from '@walwire/protocol';
import { type FlagSpec, type ParsedFlags, envName, formatHelp, parseFlags } from './cli-flags.js';
import { createLogger } from './logger.js';

/**
 * Process plumbing shared by `walwire-primary` and `walwire-replica`.
 *
 * SIGTERM and SIGINT stop the daemon gracefully once (a second signal while
 * stopping is ignored): exit 0 after `stop()` resolves, 1 if it fails.
 */
export function stopOnSignals(logger: Logger, stop: () => Promise<void>): void {
  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    stop().then(
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

/** Runs a command's main; a failure prints `<command>: <code>: <message>` and exits 2. */
export function runCommand(command: string, main: () => Promise<void>): void {
  main().catch((err: unknown) => {
    const e = err as { code?: string; message?: string };
    console.error(`${command}: ${e.code ? `${e.code}: ` : ''}${e.message ?? String(err)}`);
    process.exit(2);
  });
}

/**
 * The start of every walwire command: parse flags (and their environment
 * variables), print `--help` and return null, check the flags marked
 * `required`, and create the pino logger from `--log-level`/`--log-pretty`.
 */
export function setupCommand(command: string, summary: string, specs: readonly FlagSpec[], argv: readonly string[] = process.argv.slice(2)): { flags: ParsedFlags; logger: Logger } | null {
  const { flags, help } = parseFlags(specs, argv);
  if (help) {
    console.log(formatHelp(`${command} [flags]`, summary, specs));
    return null;
  }
  for (const spec of specs) {
    if (spec.required && (flags[spec.name] === undefined || flags[spec.name] === '')) {
      throw new InvalidOptionError(`flag --${spec.name} (or ${envName(spec)}) is required`);
    }
  }
  const pretty = flags['log-pretty'];
  const logger = createLogger({ name: command, level: flags['log-level'] as string, ...(pretty !== undefined ? { pretty: pretty as boolean } : {}) });
  return { flags, logger };
}
