import { InvalidNamespaceError } from './errors.js';
import { describe } from './options.js';

/** A namespace name: one replicated database plus its blob store. */
export const NAMESPACE_PATTERN = /^[a-z0-9][a-z0-9_-]{0,63}$/;

/** A generation id: 128 random bits as 32 lowercase hex digits. */
export const GENERATION_PATTERN = /^[0-9a-f]{32}$/;

/** A database checksum: 64 bits as 16 lowercase hex digits. */
export const CHECKSUM_PATTERN = /^[0-9a-f]{16}$/;

/** A SHA-256 digest as 64 lowercase hex digits. */
export const SHA256_PATTERN = /^[0-9a-f]{64}$/;

/**
 * A blob id: either the content SHA-256 or a client-chosen id. The character
 * set keeps ids safe as file names and URL path segments; a leading dot is
 * refused so an id can never name `.` , `..` or a hidden temp file.
 */
export const BLOB_ID_PATTERN = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;

/** The checksum of a database with no pages. */
export const EMPTY_CHECKSUM = '0000000000000000';

export function isNamespace(value: unknown): value is string {
  return typeof value === 'string' && NAMESPACE_PATTERN.test(value);
}

/** Throws WALWIRE_ERR_INVALID_NAMESPACE unless `value` is a valid namespace name. */
export function assertNamespace(value: unknown): string {
  if (!isNamespace(value)) {
    throw new InvalidNamespaceError(
      `namespace name must match [a-z0-9][a-z0-9_-]{0,63}, received ${describe(value)}`,
    );
  }
  return value;
}

export function isGeneration(value: unknown): value is string {
  return typeof value === 'string' && GENERATION_PATTERN.test(value);
}

export function isChecksum(value: unknown): value is string {
  return typeof value === 'string' && CHECKSUM_PATTERN.test(value);
}

export function isSha256(value: unknown): value is string {
  return typeof value === 'string' && SHA256_PATTERN.test(value);
}

export function isBlobId(value: unknown): value is string {
  return typeof value === 'string' && BLOB_ID_PATTERN.test(value);
}
