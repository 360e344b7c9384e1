// The rtnetlink seam of the host plumbing: a socket in one network namespace
// (ours, or a container's) that takes typed requests (netlink-codec.ts) and
// answers each with the kernel's reply. The real one is native/netlink.c,
// loaded from the same build/Release/weave_native.node as the data plane's
// addon; tests pass a fake. One transact at a time per socket: requests are
// queued here, since the addon refuses a second one while the first runs.
//
// It must never turn a kernel error into success: every request's errno
// reaches the caller, with the kernel's own words when it gave any.

import { RouterError } from '../mesh/errors';
import { errorMessage } from '../../common/errors';
import type { RtReply, RtRequest } from './netlink-codec';
import { decodeReplies, encodeRequests } from './netlink-codec';
import type { HostAddon } from './host-addon';
import { loadHostAddon } from './host-addon';

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

class NativeNetlinkSocket implements NetlinkSocket {
  readonly nsFd: number;
  private seq = 1;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly lib: HostAddon, private readonly handle: object, private readonly where: string) {
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
    const lib = loadHostAddon();
    try {
      return new NativeNetlinkSocket(lib, lib.netlinkOpen(nsPath), nsPath ?? 'our namespace');
    } catch (err) {
      throw new RouterError('io', `cannot open a netlink socket in ${nsPath ?? 'our namespace'}: ${errorMessage(err)}`, { cause: err });
    }
  },
  describeErrno(errno) {
    return loadHostAddon().describeErrno(errno);
  },
};
