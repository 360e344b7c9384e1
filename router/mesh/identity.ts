// Who this peer is across restarts: its name (derived once from the machine
// and the data directory, then persisted, so simulated hosts sharing one
// machine-id still differ) and its incarnation (strictly larger on every
// start, so others can tell a restart from a stale entry). File I/O lives here
// and nowhere else in the control plane.

import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../../common/files';
import { RouterError } from './errors';
import { isPeerName, PeerName, peerNameFromSeed } from './peer-name';

const NAME_FILE = 'peer-name';
const INCARNATION_FILE = 'incarnation';
export const TARGETS_FILE = 'peers.json';
const MACHINE_ID_FILES = ['/etc/machine-id', '/var/lib/dbus/machine-id', '/sys/class/dmi/id/product_uuid'];

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
 * The peer name: the one given, else the persisted one, else derived from the
 * machine id and the datadir path. A given name that differs from the
 * persisted one replaces it (the caller warns: other state may be stale).
 */
export function resolvePeerName(datadir: string, given: PeerName | null): { name: PeerName; changed: boolean } {
  const file = path.join(datadir, NAME_FILE);
  const stored = readOptional(file);
  const storedName = stored !== null && isPeerName(stored) ? stored : null;
  let name: PeerName;
  if (given !== null) {
    name = given;
  } else if (storedName !== null) {
    name = storedName;
  } else {
    const machine = MACHINE_ID_FILES.map(readOptional).find((s) => s !== null && s !== '') ?? randomBytes(16).toString('hex');
    name = peerNameFromSeed(createHash('sha256').update(`${machine}\0${path.resolve(datadir)}`).digest());
  }
  if (name !== storedName) writeFileAtomic(file, name + '\n');
  return { name, changed: storedName !== null && name !== storedName };
}

/** A number larger than any earlier start's, even if the wall clock went back. */
export function nextIncarnation(datadir: string, nowMs: number): number {
  const file = path.join(datadir, INCARNATION_FILE);
  const previous = Number(readOptional(file) ?? '0');
  const incarnation = Math.max(nowMs, Number.isSafeInteger(previous) ? previous + 1 : 0);
  writeFileAtomic(file, `${incarnation}\n`);
  return incarnation;
}

/** Direct targets the user gave (launch, connect), reused on restart. Bad content is ignored with a warning by the caller. */
export function loadTargets(datadir: string): { targets: string[]; problem: string | null } {
  const text = readOptional(path.join(datadir, TARGETS_FILE));
  if (text === null) return { targets: [], problem: null };
  try {
    const parsed: unknown = JSON.parse(text);
    if (!Array.isArray(parsed) || !parsed.every((x) => typeof x === 'string')) throw new Error('not a list of strings');
    return { targets: parsed, problem: null };
  } catch (err) {
    return { targets: [], problem: `ignoring ${TARGETS_FILE}: ${(err as Error).message}` };
  }
}

export function saveTargets(datadir: string, targets: readonly string[]): void {
  writeFileAtomic(path.join(datadir, TARGETS_FILE), JSON.stringify([...targets].sort(), null, 1) + '\n');
}
