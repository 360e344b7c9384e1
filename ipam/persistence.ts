// Where IPAM state survives a restart: <datadir>/ipam.json. This file owns the
// store interface the core uses, an in-memory store for tests, and the file
// adapter (the only IPAM code that touches the filesystem).
//
// The file is written atomically (temporary file, fsync, rename), so a crash
// leaves either the old state or the new one, never half of each; a write the
// disk refuses is retried (common/state-files.ts), and a file that is not
// used is set aside as ipam.json.corrupt-TIMESTAMP, never overwritten. Reading
// treats the file as hostile input: the JSON shape is checked here, the ring
// and consensus bytes go through the wire decoder, and snapshot.ts
// validates the rest against its configuration (same peer, same range) and
// discards a mismatch with a warning.
//
// Layout (JSON, format 1):
//   { "format": 1, "peer": "aa:bb:..", "range": "10.32.0.0/12",
//     "ring": "<base64 of messages.ts encodeRing>" | null,
//     "consensus": "<base64 of encodeClaims>" | null,
//     "allocations": [ { "container": "...", "address": "10.32.0.5",
//                        "prefixLen": 12, "releaseAtMs": null | number } ] }

import * as fs from 'node:fs';
import * as path from 'node:path';
import { isPeerName, PeerName } from '../router/mesh/peer-name';
import { readStateFile, setAside } from '../common/files';
import { stateFiles } from '../common/state-files';
import type { StateFileKeeper } from '../common/state-files';
import { IpamError } from './errors';
import { errorMessage } from '../common/errors';

export const IPAM_STATE_FILE = 'ipam.json';
const FORMAT = 1;
/** A state file far beyond this is not ours: a million allocations is about 100 MB. */
const MAX_STATE_FILE_BYTES = 256 * 1024 * 1024;

export interface StoredAllocation {
  container: string;
  /** Address without prefix. */
  address: string;
  prefixLen: number;
  releaseAtMs: number | null;
}

export interface IpamSnapshot {
  peer: PeerName;
  range: string;
  ring: Uint8Array | null;
  consensus: Uint8Array | null;
  allocations: StoredAllocation[];
}

export interface IpamStore {
  /** The saved snapshot, null when there is none; throws IpamError('decode' | 'io') on a damaged one. */
  load(): IpamSnapshot | null;
  save(snapshot: IpamSnapshot): void;
  /** Forgets everything (weave reset). */
  clear(): void;
  /** What load() returned is not used (another peer's, another range): keep it for a human instead of overwriting it. */
  discard?(reason: string): void;
}

export class MemoryIpamStore implements IpamStore {
  saved: IpamSnapshot | null = null;
  saves = 0;

  load(): IpamSnapshot | null {
    return this.saved;
  }

  save(snapshot: IpamSnapshot): void {
    this.saved = snapshot;
    this.saves++;
  }

  clear(): void {
    this.saved = null;
  }
}

function toBase64(b: Uint8Array | null): string | null {
  return b === null ? null : Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64');
}

function fromBase64(v: unknown, field: string, file: string): Uint8Array | null {
  if (v === null || v === undefined) return null;
  if (typeof v !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(v)) throw IpamError.decode(file, `${field} is not base64`);
  return new Uint8Array(Buffer.from(v, 'base64'));
}

/** Checks the JSON shape of a stored snapshot; the bytes inside are decoded by the core. */
export function parseSnapshotJson(text: string, file: string): IpamSnapshot {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw IpamError.decode(file, `not JSON (${errorMessage(err)})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw IpamError.decode(file, 'not a JSON object');
  const o = raw as Record<string, unknown>;
  if (o['format'] !== FORMAT) throw IpamError.decode(file, `format ${JSON.stringify(o['format'])}, we read ${FORMAT}`);
  const peer = o['peer'];
  if (typeof peer !== 'string' || !isPeerName(peer)) throw IpamError.decode(file, 'peer is not a peer name');
  const range = o['range'];
  if (typeof range !== 'string' || range.length > 64) throw IpamError.decode(file, 'range is not a CIDR string');
  const allocs = o['allocations'];
  if (!Array.isArray(allocs)) throw IpamError.decode(file, 'allocations is not a list');
  const allocations: StoredAllocation[] = [];
  for (const a of allocs) {
    if (typeof a !== 'object' || a === null) throw IpamError.decode(file, 'an allocation is not an object');
    const r = a as Record<string, unknown>;
    const container = r['container'];
    const address = r['address'];
    const prefixLen = r['prefixLen'];
    const releaseAtMs = r['releaseAtMs'];
    if (typeof container !== 'string' || typeof address !== 'string' || address.length > 64) throw IpamError.decode(file, 'an allocation lacks container or address');
    if (typeof prefixLen !== 'number' || !Number.isInteger(prefixLen) || prefixLen < 0 || prefixLen > 128) throw IpamError.decode(file, `allocation of ${address} has a bad prefix length`);
    if (releaseAtMs !== null && (typeof releaseAtMs !== 'number' || !Number.isFinite(releaseAtMs))) throw IpamError.decode(file, `allocation of ${address} has a bad releaseAtMs`);
    allocations.push({ container, address, prefixLen, releaseAtMs: releaseAtMs as number | null });
  }
  return {
    peer,
    range,
    ring: fromBase64(o['ring'], 'ring', file),
    consensus: fromBase64(o['consensus'], 'consensus', file),
    allocations,
  };
}

export function snapshotToJson(s: IpamSnapshot): string {
  return JSON.stringify({
    format: FORMAT,
    peer: s.peer,
    range: s.range,
    ring: toBase64(s.ring),
    consensus: toBase64(s.consensus),
    allocations: s.allocations,
  }) + '\n';
}

/**
 * <datadir>/ipam.json, through common/state-files.ts: read with a size cap;
 * a file that cannot be used is set aside (ipam.json.corrupt-TIMESTAMP), never
 * overwritten; writes are atomic and durable, and retried when the disk
 * refuses (the error still reaches IPAM, which warns).
 */
export class FileIpamStore implements IpamStore {
  readonly file: string;

  constructor(datadir: string, private readonly keeper: StateFileKeeper = stateFiles) {
    this.file = path.join(datadir, IPAM_STATE_FILE);
  }

  load(): IpamSnapshot | null {
    try {
      const text = readStateFile(this.file, MAX_STATE_FILE_BYTES);
      return text === null ? null : parseSnapshotJson(text, this.file);
    } catch (err) {
      const keptAs = this.setAside(errorMessage(err));
      if (err instanceof IpamError) throw new IpamError(err.code, `${err.message}${keptAs}`, { cause: err });
      throw new IpamError('io', `cannot read ${this.file}: ${errorMessage(err)}${keptAs}`, { cause: err });
    }
  }

  save(snapshot: IpamSnapshot): void {
    const err = this.keeper.save(this.file, snapshotToJson(snapshot), { durable: true });
    if (err !== null) throw new IpamError('io', `cannot write ${this.file} (retrying): ${errorMessage(err)}`, { cause: err });
  }

  /** The saved state is not used (damaged, or another peer's or range's): keep it aside rather than overwrite it. */
  discard(reason: string): void {
    this.setAside(reason);
  }

  clear(): void {
    this.keeper.forget(this.file);
    try {
      fs.rmSync(this.file, { force: true });
    } catch (err) {
      throw new IpamError('io', `cannot remove ${this.file}: ${errorMessage(err)}`, { cause: err });
    }
  }

  /** Moves the file aside and reports it; returns "; kept as NAME" for messages, or ''. */
  private setAside(reason: string): string {
    const keptAs = setAside(this.file, Date.now());
    if (keptAs === null && !fs.existsSync(this.file)) return '';
    this.keeper.ignored(this.file, reason, keptAs);
    return keptAs === null ? '' : `; kept as ${path.basename(keptAs)}`;
  }
}
