import { afterEach } from 'vitest';
import { killAllChildren } from './processes.js';
import { cleanupTempDirs } from './tmp.js';

export * from './tmp.js';
export * from './processes.js';
export * from './writers.js';
export * from './convergence.js';
export * from './ports.js';
export * from './chaos-proxy.js';
export * from './cluster.js';

/** Registers afterEach clean-up: kill -9 every child, then remove temp dirs. */
export function useHarness(): void {
  afterEach(async () => {
    await killAllChildren();
    cleanupTempDirs();
  });
}
export * from './wal-capture.js';
export * from './primary-daemon.js';
export * from './http-client.js';
export * from './blobs.js';
