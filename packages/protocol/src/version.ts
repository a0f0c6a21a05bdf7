import { UnsupportedVersionError } from './errors.js';
import { MIN_PROTOCOL_VERSION, PROTOCOL_VERSION } from './messages.js';

/**
 * Picks the highest protocol version both peers speak. The replica offers a
 * range in HELLO; the primary answers with one version in WELCOME or rejects
 * with WALWIRE_ERR_UNSUPPORTED_VERSION.
 */
export function negotiateVersion(
  peerMin: number,
  peerMax: number,
  localMin: number = MIN_PROTOCOL_VERSION,
  localMax: number = PROTOCOL_VERSION,
): number {
  const chosen = Math.min(peerMax, localMax);
  if (chosen < Math.max(peerMin, localMin)) {
    throw new UnsupportedVersionError(
      `peer speaks protocol versions ${peerMin}..${peerMax}, this build speaks ${localMin}..${localMax}`,
    );
  }
  return chosen;
}
