// Peer names: 48-bit identifiers written like MAC addresses ("aa:bb:cc:dd:ee:ff"),
// as in Weave Net. A branded string so they cannot be mixed up with other text.

import { ByteReader, ByteWriter } from '../../common/codec';
import type { CodecError } from '../../common/errors';
import { RouterError } from './errors';

export type PeerName = string & { readonly __brand: 'PeerName' };

export const PEER_NAME_BYTES = 6;
const PEER_NAME_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

export function parsePeerName(text: string): PeerName {
  const lower = text.trim().toLowerCase();
  if (!PEER_NAME_RE.test(lower)) {
    throw RouterError.config(`peer name must look like a MAC address (aa:bb:cc:dd:ee:ff), got ${JSON.stringify(text)}`);
  }
  return lower as PeerName;
}

export function isPeerName(text: string): text is PeerName {
  return PEER_NAME_RE.test(text);
}

export function peerNameFromBytes(bytes: Uint8Array, offset = 0): PeerName {
  const parts: string[] = [];
  for (let i = 0; i < PEER_NAME_BYTES; i++) parts.push((bytes[offset + i] ?? 0).toString(16).padStart(2, '0'));
  return parts.join(':') as PeerName;
}

export function peerNameToBytes(name: PeerName, out: Uint8Array = new Uint8Array(PEER_NAME_BYTES), offset = 0): Uint8Array {
  const parts = name.split(':');
  for (let i = 0; i < PEER_NAME_BYTES; i++) out[offset + i] = parseInt(parts[i] ?? '0', 16);
  return out;
}

/**
 * Derives a peer name from arbitrary seed bytes (a hash): unicast, locally
 * administered, so it never collides with a vendor-assigned MAC.
 */
export function peerNameFromSeed(hash: Uint8Array): PeerName {
  const bytes = new Uint8Array(PEER_NAME_BYTES);
  bytes.set(hash.subarray(0, PEER_NAME_BYTES));
  bytes[0] = ((bytes[0] ?? 0) & 0xfe) | 0x02;
  return peerNameFromBytes(bytes);
}

/** Total order used everywhere determinism matters (routes, tie-breaks). */
export function comparePeerNames(a: PeerName, b: PeerName): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The byte codecs of common/codec.ts plus the 6-byte peer name every mesh wire
 * format carries. Failures are RouterErrors, so a connection handles a hostile
 * peer's bytes as one error type whatever layer found them.
 */
export class MeshReader extends ByteReader {
  protected override fail(err: CodecError): never {
    throw new RouterError(err.code, err.message);
  }

  peerName(field: string): PeerName {
    return peerNameFromBytes(this.bytes(PEER_NAME_BYTES, field));
  }
}

export class MeshWriter extends ByteWriter {
  peerName(name: PeerName): this {
    return this.bytes(peerNameToBytes(name));
  }
}
