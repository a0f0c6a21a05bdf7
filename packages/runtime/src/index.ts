export * from './failpoints.js';
export * from './durable-fs.js';
export * from './logger.js';
