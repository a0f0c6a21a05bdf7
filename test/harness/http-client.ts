/**
 * Raw HTTP for tests that need what fetch hides: paths sent exactly as
 * written (fetch resolves `..` and `%2e%2e`), bodies that stop short of
 * their content-length, and connections cut mid-upload.
 */
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { connect } from 'node:net';
import { TEST_TOKEN } from './cluster.js';

export interface HttpReply {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
  /** The body parsed as JSON, or {} when it is not JSON. */
  readonly json: Record<string, unknown>;
}

function parseJson(body: Buffer): Record<string, unknown> {
  try {
    return JSON.parse(body.toString('utf8')) as Record<string, unknown>;
  } catch {
    return {};
  }
}

/** One request with the test token; `path` goes on the wire unchanged. */
export function httpCall(
  port: number,
  method: string,
  path: string,
  options: { body?: Uint8Array | readonly Uint8Array[]; headers?: Record<string, string>; token?: string } = {},
): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port, method, path, headers: { authorization: `Bearer ${options.token ?? TEST_TOKEN}`, ...options.headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks);
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json: parseJson(body) });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    const body = options.body;
    if (Array.isArray(body)) {
      // Chunked transfer (no content-length), one chunk per element.
      for (const part of body) req.write(part);
      req.end();
    } else {
      req.end(body as Uint8Array | undefined);
    }
  });
}

/**
 * Sends a raw request head and `sent` body bytes, then either half-closes
 * the connection (`end`: the server sees the body end early) or destroys
 * it (`abort`: a client that vanished). Resolves with the status and JSON
 * the server answered, if any.
 */
export function truncatedUpload(
  port: number,
  path: string,
  declared: number,
  sent: Uint8Array,
  how: 'end' | 'abort',
): Promise<{ status: number | null; json: Record<string, unknown> }> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(`PUT ${path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer ${TEST_TOKEN}\r\nContent-Length: ${declared}\r\n\r\n`);
      socket.write(sent);
      setTimeout(() => {
        if (how === 'end') socket.end();
        else {
          socket.destroy();
          resolve({ status: null, json: {} });
        }
      }, 50);
    });
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
      const at = text.indexOf('\r\n\r\n');
      resolve({ status: m ? Number(m[1]) : null, json: at < 0 ? {} : parseJson(Buffer.from(text.slice(at + 4))) });
    });
  });
}
