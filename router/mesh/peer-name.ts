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

/** Two hex digits per byte value: names are written and read for every entry of every topology update, so no per-byte formatting. */
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

export function peerNameFromBytes(bytes: Uint8Array, offset = 0): PeerName {
  let s = HEX[bytes[offset] ?? 0]!;
  for (let i = 1; i < PEER_NAME_BYTES; i++) s += ':' + HEX[bytes[offset + i] ?? 0]!;
  return s as PeerName;
}

function hexDigit(code: number): number {
  if (code >= 48 && code <= 57) return code - 48;
  if (code >= 97 && code <= 102) return code - 87;
  return code >= 65 && code <= 70 ? code - 55 : 0;
}

/**
 * Names already turned into bytes, bounded. Topology and IPAM ring updates
 * write every peer's name each time: with a digit loop per call, this small
 * function became the one hot enough for TurboFan in a three-peer mesh that
 * carried nothing but pings, and the first optimizing compile maps ~3.7 MiB
 * of node's own code into the router (docs/architecture.md, router RSS).
 */
const nameBytes = new Map<string, Uint8Array>();
const MAX_CACHED_NAMES = 4096;

export function peerNameToBytes(name: PeerName, out: Uint8Array = new Uint8Array(PEER_NAME_BYTES), offset = 0): Uint8Array {
  let b = nameBytes.get(name);
  if (b === undefined) {
    b = new Uint8Array(PEER_NAME_BYTES);
    for (let i = 0; i < PEER_NAME_BYTES; i++) b[i] = (hexDigit(name.charCodeAt(3 * i)) << 4) | hexDigit(name.charCodeAt(3 * i + 1));
    if (nameBytes.size >= MAX_CACHED_NAMES) nameBytes.clear();
    nameBytes.set(name, b);
  }
  out.set(b, offset);
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
