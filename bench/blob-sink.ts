/**
 * TCP sink for the blob benchmark's loopback baseline (spawned by
 * blob-suite.ts). argv[2]: JSON { bytes }.
 *
 * Listens on an ephemeral loopback port and prints {"port": N}. The first
 * connection's bytes are counted and dropped (no protocol, no copy kept);
 * once `bytes` have arrived it writes one byte back, prints
 * {"received": N, "ms": first byte → last byte} and exits.
 */
import { type AddressInfo, createServer } from 'node:net';

const { bytes } = JSON.parse(process.argv[2] ?? '{}') as { bytes: number };

const server = createServer((socket) => {
  let received = 0;
  let first = 0;
  socket.on('data', (chunk: Buffer) => {
    if (received === 0) first = performance.now();
    received += chunk.length;
    if (received >= bytes) {
      const ms = performance.now() - first;
      socket.end(Buffer.of(1), () => {
        process.stdout.write(`${JSON.stringify({ received, ms })}\n`);
        server.close();
      });
    }
  });
  socket.on('error', (err) => {
    console.error(err);
    process.exit(1);
  });
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
});
