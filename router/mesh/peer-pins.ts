// The trust-on-first-use pins (signed-gossip.ts's GossipAuthority: the key
// each peer name was first proven with) as they outlive a restart: the codec
// of the file the daemon keeps them in, and the debounce that decides when it
// is written. Without it a restarted router would trust whichever key reaches
// it first for every name again, which is the one moment an attacker who
// found a second key for a victim's name (46 free bits: about 2^46 hashes) needs.
// Pure: no I/O, the clock is injected; identity.ts reads and writes the file.
//
// File format, version 1 (JSON, UTF-8):
//
//   {"version": 1, "pins": [["aa:bb:cc:dd:ee:ff", "<64 hex digits>"], ...]}
//
//   pins: oldest first (the order GossipAuthority evicts in), each a peer
//     name and the Ed25519 public key pinned for it.
//
// Read as hostile: a file that is not this shape, another version, or more
// pins than an authority keeps is refused whole (the caller sets it aside).
// A single entry that is malformed, or whose key does not derive its name
// (peer-key.ts), or that repeats a name, is dropped and counted: the rest of
// the file still protects what it names, and no entry can pin a key to a
// name it does not derive.

import type { Clock, Timer } from '../../common/clock';
import { PUBLIC_KEY_BYTES } from './peer-key';
import { isPeerName, PeerName } from './peer-name';

export const PINS_FORMAT_VERSION = 1;
/** Between the first new pin and the write: a join of a thousand peers is one write, not a thousand. */
export const PIN_SAVE_DELAY_MS = 1_000;

export interface PeerPin {
  peer: PeerName;
  publicKey: Uint8Array;
}

export interface DecodedPins {
  pins: PeerPin[];
  /** Entries dropped, and why (the first few reasons). */
  dropped: number;
  reasons: string[];
}

const KEY_HEX = new RegExp(`^[0-9a-f]{${PUBLIC_KEY_BYTES * 2}}$`);
const MAX_REASONS = 3;

export function encodePeerPins(pins: readonly PeerPin[]): string {
  const rows = pins.map((p) => `  [${JSON.stringify(p.peer)}, "${Buffer.from(p.publicKey).toString('hex')}"]`);
  return `{"version": ${PINS_FORMAT_VERSION}, "pins": [\n${rows.join(',\n')}\n]}\n`;
}

/** Throws (an Error whose message says why) when the file as a whole is not ours; see the file comment. */
export function decodePeerPins(text: string, opts: { maxPins: number; nameOfKey: (publicKey: Uint8Array) => PeerName }): DecodedPins {
  const parsed: unknown = JSON.parse(text);
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
  const version = (parsed as { version?: unknown }).version;
  if (version !== PINS_FORMAT_VERSION) throw new Error(`version ${JSON.stringify(version) ?? 'missing'}, this router reads ${PINS_FORMAT_VERSION}`);
  const rows = (parsed as { pins?: unknown }).pins;
  if (!Array.isArray(rows)) throw new Error('"pins" is not a list');
  if (rows.length > opts.maxPins) throw new Error(`${rows.length} pins, more than the ${opts.maxPins} a router keeps`);
  const out: DecodedPins = { pins: [], dropped: 0, reasons: [] };
  const seen = new Set<string>();
  const drop = (index: number, why: string): void => {
    out.dropped++;
    if (out.reasons.length < MAX_REASONS) out.reasons.push(`entry ${index}: ${why}`);
  };
  rows.forEach((row: unknown, index) => {
    if (!Array.isArray(row) || row.length !== 2 || typeof row[0] !== 'string' || typeof row[1] !== 'string') {
      drop(index, 'not a [name, key] pair of strings');
      return;
    }
    const [name, keyHex] = row as [string, string];
    if (!isPeerName(name)) return drop(index, 'not a peer name');
    if (!KEY_HEX.test(keyHex)) return drop(index, `the key is not ${PUBLIC_KEY_BYTES * 2} lowercase hex digits`);
    if (seen.has(name)) return drop(index, `${name} is pinned twice`);
    const publicKey = Uint8Array.from(Buffer.from(keyHex, 'hex'));
    if (opts.nameOfKey(publicKey) !== name) return drop(index, `the key does not derive ${name}`);
    seen.add(name);
    out.pins.push({ peer: name, publicKey });
  });
  return out;
}

/**
 * Calls `write` once PIN_SAVE_DELAY_MS after the first change it was told of
 * (later changes in that time ride along), and at `flush` if a change is still
 * waiting (shutdown).
 */
export class PinSaver {
  private timer: Timer | null = null;

  constructor(private readonly clock: Clock, private readonly write: () => void, private readonly delayMs: number = PIN_SAVE_DELAY_MS) {}

  changed(): void {
    if (this.timer !== null) return;
    this.timer = this.clock.setTimer(this.delayMs, () => {
      this.timer = null;
      this.write();
    });
  }

  flush(): void {
    if (this.timer === null) return;
    this.timer.cancel();
    this.timer = null;
    this.write();
  }
}
