import type { Logger } from 'pino';

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
