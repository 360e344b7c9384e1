// Who this peer is across restarts: its signing key (made once, kept 0600 in
// the data directory as `peer-key`), the peer name that key derives
// (router/mesh/peer-key.ts; written to `peer-name` for people and scripts to
// read, never read back as the truth), and its incarnation (strictly larger
// on every start, so others can tell a restart from a stale entry), and the
// keys it pinned for other peers (peer-pins.ts). File I/O lives here and
// nowhere else in the control plane.

import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../../common/files';
import { stateFiles } from '../../common/state-files';
import type { StateFileKeeper } from '../../common/state-files';
import { RouterError } from './errors';
import { isPeerName, PeerName } from './peer-name';
import { KEY_SEED_BYTES, PeerKey, peerNameOfKey } from './peer-key';
import { decodePeerPins, encodePeerPins } from './peer-pins';
import type { PeerPin } from './peer-pins';

export const NAME_FILE = 'peer-name';
/** The Ed25519 seed, hex, one line; owner-only. */
export const KEY_FILE = 'peer-key';
export const INCARNATION_FILE = 'incarnation';
export const TARGETS_FILE = 'peers.json';
/** The keys pinned for other peers' names (peer-pins.ts); owner-only. */
export const PINS_FILE = 'peer-pins.json';

function readOptional(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return null;
  }
}

export function ensureDatadir(datadir: string): void {
  try {
    fs.mkdirSync(datadir, { recursive: true, mode: 0o700 });
    fs.accessSync(datadir, fs.constants.W_OK);
  } catch (err) {
    throw RouterError.config(`cannot use data directory ${datadir}: ${(err as Error).message}`);
  }
}

/**
 * Our key pair and the name it derives: the stored key, else a new one (first
 * start, or a data directory from before names were keys; the old name is
 * then reported as `previous`, since space and records held under it are not
 * ours any more). A stored key file that is not a key is a config error, not
 * something to overwrite. `expected`, when given (the old --name option), must
 * be the derived name: names cannot be chosen, only checked.
 */
export function loadPeerIdentity(datadir: string, expected: PeerName | null): { key: PeerKey; previous: PeerName | null } {
  const keyFile = path.join(datadir, KEY_FILE);
  const nameFile = path.join(datadir, NAME_FILE);
  const storedName = readOptional(nameFile);
  const storedKey = readOptional(keyFile);
  let key: PeerKey;
  if (storedKey !== null) {
    if (!/^[0-9a-f]+$/.test(storedKey) || storedKey.length !== KEY_SEED_BYTES * 2) {
      throw RouterError.config(`${keyFile} is not a peer key (${KEY_SEED_BYTES * 2} hex digits); restore it or delete it to become a new peer`);
    }
    key = PeerKey.fromSeed(Buffer.from(storedKey, 'hex'));
  } else {
    key = PeerKey.generate((n) => randomBytes(n));
    writeFileAtomic(keyFile, Buffer.from(key.seed).toString('hex') + '\n', { mode: 0o600, durable: true });
  }
  if (expected !== null && expected !== key.name) {
    throw RouterError.config(
      `--name ${expected} is not this peer's name: peer names are derived from the peer's key (${keyFile}), ` +
      `and this data directory's name is ${key.name}; leave --name out, or use the data directory that holds that key`);
  }
  if (storedName !== key.name) writeFileAtomic(nameFile, key.name + '\n');
  const previous = storedName !== null && isPeerName(storedName) && storedName !== key.name ? storedName : null;
  return { key, previous };
}

/** A number larger than any earlier start's, even if the wall clock went back. */
export function nextIncarnation(datadir: string, nowMs: number): number {
  const file = path.join(datadir, INCARNATION_FILE);
  const previous = Number(readOptional(file) ?? '0');
  const incarnation = Math.max(nowMs, Number.isSafeInteger(previous) ? previous + 1 : 0);
  // On a full disk the clock alone keeps it increasing; the write is retried, never fatal.
  stateFiles.save(file, `${incarnation}\n`);
  return incarnation;
}

/** Far more than anyone connects to directly; peers.json beyond it is not ours. */
const MAX_TARGETS = 10_000;
const MAX_TARGETS_FILE_BYTES = 1024 * 1024;

/**
 * Direct targets the user gave (launch, connect), reused on restart. A file
 * that is not a list of strings is not used: it is set aside as
 * peers.json.corrupt-TIMESTAMP and reported (common/state-files.ts), and the
 * reason is returned for the caller's log.
 */
export function loadTargets(datadir: string, keeper: StateFileKeeper = stateFiles): { targets: string[]; problem: string | null } {
  const file = path.join(datadir, TARGETS_FILE);
  let problem: string | null = null;
  const targets = keeper.load(file, MAX_TARGETS_FILE_BYTES, (text) => {
    try {
      const parsed: unknown = JSON.parse(text);
      if (!Array.isArray(parsed) || !parsed.every((x) => typeof x === 'string' && x.length <= 300)) throw new Error('not a list of peer addresses');
      if (parsed.length > MAX_TARGETS) throw new Error(`${parsed.length} peers, more than ${MAX_TARGETS}`);
      return parsed as string[];
    } catch (err) {
      problem = `ignoring ${TARGETS_FILE}: ${(err as Error).message}`;
      throw err;
    }
  });
  return { targets: targets ?? [], problem };
}

/**
 * Atomic; never throws: a write the disk refuses is logged, listed for status
 * and retried until it lands (common/state-files.ts), so a full disk never
 * stops the daemon from starting. Returns that write's error, or null.
 */
export function saveTargets(datadir: string, targets: readonly string[], keeper: StateFileKeeper = stateFiles): Error | null {
  return keeper.save(path.join(datadir, TARGETS_FILE), JSON.stringify([...targets].sort(), null, 1) + '\n');
}

/** ~80 bytes a pin: room for the most an authority keeps (40,000), not for more. */
const MAX_PINS_FILE_BYTES = 8 * 1024 * 1024;

/**
 * The pins an earlier run saved. A file that is not ours as a whole is set
 * aside and reported (common/state-files.ts); entries it drops one by one
 * (peer-pins.ts) are reported too, with the file left in place: the next save
 * rewrites it without them.
 */
export function loadPins(datadir: string, maxPins: number, keeper: StateFileKeeper = stateFiles): PeerPin[] {
  const file = path.join(datadir, PINS_FILE);
  const decoded = keeper.load(file, MAX_PINS_FILE_BYTES, (text) => decodePeerPins(text, { maxPins, nameOfKey: peerNameOfKey }));
  if (decoded === null) return [];
  if (decoded.dropped > 0) {
    keeper.ignored(file, `${decoded.dropped} of ${decoded.dropped + decoded.pins.length} pins (${decoded.reasons.join('; ')})`, null);
  }
  return decoded.pins;
}

/** Atomic, owner-only and fsynced (a pin lost to a power cut is a name trusted afresh); never throws (as saveTargets). */
export function savePins(datadir: string, pins: readonly PeerPin[], keeper: StateFileKeeper = stateFiles): Error | null {
  return keeper.save(path.join(datadir, PINS_FILE), encodePeerPins(pins), { mode: 0o600, durable: true });
}
