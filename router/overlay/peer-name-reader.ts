// Peer names read from datagram headers (the sleeve sender, an inner frame's
// source and destination) without building a string per datagram, and
// written into them without making their bytes per frame: the six
// bytes are looked up as two 24-bit halves (mac-map.ts: no number is made
// per lookup), and each name is made once. On
// the receive path that spared three strings of 17 characters, their hashing
// (as map keys) and character-wise comparisons per datagram; with idle
// traffic, where every datagram runs through a cold router, that work was
// part of each ping's time (docs/architecture.md, the data path).
//
// Bounded: the bytes come from the wire before anything is authenticated, so
// a stranger can name as many peers as it likes; the table is emptied when
// full and refilled by the names in use.

import { MacMap } from './mac-map';
import { peerNameFromBytes, peerNameToBytes, type PeerName } from '../mesh/peer-name';

export const MAX_CACHED_PEER_NAMES = 4096;

export class PeerNameReader {
  private readonly names = new MacMap<PeerName>();

  constructor(private readonly maxEntries = MAX_CACHED_PEER_NAMES) {}

  /** The peer name in buf[off, off + 6): the same string each time for the same bytes. */
  readonly read = (buf: Uint8Array, off: number): PeerName => {
    let name = this.names.get(buf, off);
    if (name === undefined) {
      name = peerNameFromBytes(buf, off);
      if (this.names.size >= this.maxEntries) this.names.clear();
      this.names.set(buf, off, name);
    }
    return name;
  };

  get size(): number {
    return this.names.size;
  }
}

/** The other way: a peer name's six wire bytes, made once per name (bounded the same way). */
export class PeerNameBytes {
  private readonly bytes = new Map<PeerName, Uint8Array>();

  constructor(private readonly maxEntries = MAX_CACHED_PEER_NAMES) {}

  of(name: PeerName): Uint8Array {
    let b = this.bytes.get(name);
    if (b === undefined) {
      b = peerNameToBytes(name);
      if (this.bytes.size >= this.maxEntries) this.bytes.clear();
      this.bytes.set(name, b);
    }
    return b;
  }
}
