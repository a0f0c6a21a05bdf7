export * from './failpoints.js';
export * from './durable-fs.js';
export * from './logger.js';
export * from './cli-flags.js';
export * from './auth.js';
export * from './backoff.js';
export * from './http.js';
