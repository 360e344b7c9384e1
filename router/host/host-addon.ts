// The native addon as the host plumbing sees it: rtnetlink sockets
// (native/netlink.c, used by netlink-socket.ts) and nftables transactions
// in-process (native/nft.c, used by port-security.ts), from the same
// build/Release/weave_native.node as the data plane's addon. Loaded on first
// use, so code that never needs it (the CLI, unit tests with fakes) never
// loads it.

import fs from 'node:fs';
import path from 'node:path';
import { RouterError } from '../mesh/errors';
import { errorMessage } from '../../common/errors';

export interface HostAddon {
  netlinkOpen(nsPath: string | null): object;
  netlinkNsFd(handle: object): number;
  netlinkTransact(handle: object, request: Uint8Array, count: number, firstSeq: number): Promise<Uint8Array>;
  netlinkClose(handle: object): void;
  describeErrno(errno: number): string;
  /** Applies an nft JSON script in-process: null when applied, else nft's error. Throws when libnftables cannot be loaded. */
  nftRun(script: string): string | null;
  /** Unloads libnftables again (3-4 MB of RSS); the next nftRun loads it. */
  nftUnload(): boolean;
}

const ADDON_FILE = 'weave_native.node';
let addon: HostAddon | null = null;

/** Throws RouterError('io') when the addon is not built or is a stale build. */
export function loadHostAddon(): HostAddon {
  if (addon !== null) return addon;
  // Next to the sources (router/host/) or the compiled output (dist/router/host/).
  const candidates = [path.resolve(__dirname, '..', '..', 'build', 'Release', ADDON_FILE), path.resolve(__dirname, '..', '..', '..', 'build', 'Release', ADDON_FILE)];
  const file = candidates.find((p) => fs.existsSync(p));
  if (file === undefined) throw new RouterError('io', `the native addon is not built (build/Release/${ADDON_FILE}; run npx node-gyp rebuild)`);
  let mod: Record<string, unknown>;
  try {
    mod = require(file) as Record<string, unknown>;
  } catch (err) {
    throw new RouterError('io', `loading ${file} failed: ${errorMessage(err)}`, { cause: err });
  }
  const missing = ['netlinkOpen', 'netlinkTransact', 'nftRun', 'nftUnload'].filter((f) => typeof mod[f] !== 'function');
  if (missing.length > 0) throw new RouterError('io', `${file} has no ${missing.join('/')} (stale build? run npx node-gyp rebuild)`);
  addon = mod as unknown as HostAddon;
  return addon;
}
