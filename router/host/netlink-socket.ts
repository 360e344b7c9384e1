// The rtnetlink seam of the host plumbing: a socket in one network namespace
// (ours, or a container's) that takes typed requests (netlink-codec.ts) and
// answers each with the kernel's reply. The real one is native/netlink.c,
// loaded from the same build/Release/weave_native.node as the data plane's
// addon; tests pass a fake. One transact at a time per socket: requests are
// queued here, since the addon refuses a second one while the first runs.
//
// It must never turn a kernel error into success: every request's errno
// reaches the caller, with the kernel's own words when it gave any.

import fs from 'node:fs';
import path from 'node:path';
import { RouterError } from '../mesh/errors';
import { errorMessage } from '../../common/errors';
import type { RtReply, RtRequest } from './netlink-codec';
import { decodeReplies, encodeRequests } from './netlink-codec';

export interface NetlinkSocket {
  /** The namespace's fd for IFLA_NET_NS_FD; -1 for a socket in our own namespace. */
  readonly nsFd: number;
  /** Sends `reqs` in one go; every request runs, whatever happens to the others, and gets its reply in order. */
  request(reqs: readonly RtRequest[]): Promise<RtReply[]>;
  close(): void;
}

export interface Netlink {
  /** A socket in the namespace at `nsPath`, or in ours with null. Throws RouterError('io'). */
  open(nsPath: string | null): NetlinkSocket;
  /** The errno's name and text ("EEXIST: File exists"). */
  describeErrno(errno: number): string;
}

/** What the kernel said to one request, for error messages: "File exists (EEXIST): the kernel's words". */
export function replyText(netlink: Netlink, reply: RtReply): string {
  const [name, text] = netlink.describeErrno(reply.errno).split(': ', 2);
  return `${text ?? name} (${name})${reply.said !== null && reply.said !== '' ? `: ${reply.said}` : ''}`;
}

interface NetlinkAddon {
  netlinkOpen(nsPath: string | null): object;
  netlinkNsFd(handle: object): number;
  netlinkTransact(handle: object, request: Uint8Array, count: number, firstSeq: number): Promise<Uint8Array>;
  netlinkClose(handle: object): void;
  describeErrno(errno: number): string;
}

const ADDON_FILE = 'weave_native.node';
let addon: NetlinkAddon | null = null;

function loadAddon(): NetlinkAddon {
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
  if (typeof mod['netlinkOpen'] !== 'function' || typeof mod['netlinkTransact'] !== 'function') {
    throw new RouterError('io', `${file} has no netlinkOpen/netlinkTransact (stale build? run npx node-gyp rebuild)`);
  }
  addon = mod as unknown as NetlinkAddon;
  return addon;
}

class NativeNetlinkSocket implements NetlinkSocket {
  readonly nsFd: number;
  private seq = 1;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly lib: NetlinkAddon, private readonly handle: object, private readonly where: string) {
    this.nsFd = lib.netlinkNsFd(handle);
  }

  request(reqs: readonly RtRequest[]): Promise<RtReply[]> {
    const run = async (): Promise<RtReply[]> => {
      const first = this.seq;
      this.seq = (this.seq + reqs.length) >>> 0;
      const bytes = encodeRequests(reqs, first);
      let reply: Uint8Array;
      try {
        reply = await this.lib.netlinkTransact(this.handle, bytes, reqs.length, first);
      } catch (err) {
        throw new RouterError('io', `netlink in ${this.where}: ${errorMessage(err)}`, { cause: err });
      }
      return decodeReplies(reply, first, reqs.length);
    };
    const next = this.queue.then(run, run);
    this.queue = next.catch(() => undefined);
    return next;
  }

  close(): void {
    this.lib.netlinkClose(this.handle);
  }
}

/** rtnetlink through the native addon. */
export const nativeNetlink: Netlink = {
  open(nsPath) {
    const lib = loadAddon();
    try {
      return new NativeNetlinkSocket(lib, lib.netlinkOpen(nsPath), nsPath ?? 'our namespace');
    } catch (err) {
      throw new RouterError('io', `cannot open a netlink socket in ${nsPath ?? 'our namespace'}: ${errorMessage(err)}`, { cause: err });
    }
  },
  describeErrno(errno) {
    return loadAddon().describeErrno(errno);
  },
};
