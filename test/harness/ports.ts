import { createServer } from 'node:net';

/**
 * A free loopback port, for a child process that must be told its port in
 * advance. Prefer port 0 with the daemon reporting its bound port; use this
 * only when that is impossible.
 */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port bound');
  return address.port;
}
