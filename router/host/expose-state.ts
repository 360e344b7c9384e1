// The record of host exposure, <datadir>/expose.json: the exposed CIDRs in
// the order they were exposed, and whether we turned ip_forward on (so a
// restart between expose and hide still knows to turn it off again).
//
// It must never trust the file: a damaged one is an error naming the file, and
// never more than MAX_EXPOSED_ADDRESSES are read. It never writes half a
// record; the empty state is no file at all.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { RouterError } from '../mesh/errors';
import { errorMessage } from '../../common/errors';
import { readStateFile, setAside } from '../../common/files';
import { stateFiles } from '../../common/state-files';
import { parseAttachCidr } from './attach-address';

export const EXPOSE_STATE_FILE = 'expose.json';
const STATE_VERSION = 1;
/** More than anyone exposes; bounds what a damaged state file or a request can make us do. */
export const MAX_EXPOSED_ADDRESSES = 64;
const MAX_STATE_FILE_BYTES = 64 * 1024;

export interface ExposeState {
  /** Exposed CIDRs ("10.32.0.1/12"), in the order they were exposed. */
  addresses: string[];
  /** True when ip_forward was off and we turned it on. */
  ipForwardEnabled: boolean;
}

/** Nothing exposed; spread it with a fresh `addresses` array, never mutate it. */
export const EMPTY_EXPOSE_STATE: ExposeState = { addresses: [], ipForwardEnabled: false };

/**
 * Reads <datadir>/expose.json; a missing file is the empty state, a damaged
 * one an error, and the file is then set aside (expose.json.corrupt-TIMESTAMP,
 * reported through common/state-files.ts) so the next save does not erase it.
 */
export function loadExposeState(datadir: string): ExposeState {
  const file = path.join(datadir, EXPOSE_STATE_FILE);
  try {
    const text = readStateFile(file, MAX_STATE_FILE_BYTES);
    return text === null ? { ...EMPTY_EXPOSE_STATE, addresses: [] } : parseExposeState(text, file);
  } catch (err) {
    const keptAs = setAside(file, Date.now());
    stateFiles.ignored(file, errorMessage(err), keptAs);
    if (err instanceof RouterError) throw err;
    throw new RouterError('io', `cannot read ${file}: ${errorMessage(err)}`, { cause: err });
  }
}

function parseExposeState(text: string, file: string): ExposeState {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new RouterError('decode', `${file} is not JSON: ${errorMessage(err)}`);
  }
  const rec = parsed as Partial<Record<keyof ExposeState | 'version', unknown>> | null;
  if (typeof rec !== 'object' || rec === null || rec.version !== STATE_VERSION) {
    throw new RouterError('decode', `${file}: expected version ${STATE_VERSION}, got ${JSON.stringify(rec?.version)}`);
  }
  const list = rec.addresses;
  if (!Array.isArray(list) || list.length > MAX_EXPOSED_ADDRESSES) {
    throw new RouterError('decode', `${file}: "addresses" must be an array of at most ${MAX_EXPOSED_ADDRESSES} CIDRs`);
  }
  const addresses = list.map((a) => {
    if (typeof a !== 'string') throw new RouterError('decode', `${file}: "addresses" holds a ${typeof a}`);
    return parseAttachCidr(a).cidr;
  });
  return { addresses: [...new Set(addresses)], ipForwardEnabled: rec.ipForwardEnabled === true };
}

/** Records `state`; the empty state removes the file instead. */
export function saveExposeState(datadir: string, state: ExposeState): void {
  const file = path.join(datadir, EXPOSE_STATE_FILE);
  if (state.addresses.length === 0 && !state.ipForwardEnabled) {
    stateFiles.forget(file);
    try { fs.unlinkSync(file); } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    return;
  }
  // A refused write is retried until it lands (common/state-files.ts); the caller still hears of it.
  const failed = stateFiles.save(file, JSON.stringify({ version: STATE_VERSION, ...state }, null, 1) + '\n');
  if (failed !== null) throw failed;
}
