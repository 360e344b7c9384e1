// `weave reset` on the daemon's side: what the product made on this host and
// only the daemon can take away. Parts that made something of their own (the
// Docker network plugin: its `weave` network, its socket) register a hook;
// `weave reset` asks for the reset (POST /reset/host) after detaching the
// containers, hiding the host and handing the IPAM space over; the hooks run
// then, while the router still answers, and the bridge (with its TAP, veths
// and forward-accept rules) goes when the router stops. The DNS address,
// policy rule and route table go at every stop already (dns/host-setup.ts).
//
// It must never stop on a failing hook: each is run, its failure logged and
// reported back to `weave reset`, which prints what to remove by hand.

import type { Logger } from '../../common/logger';
import { errorMessage } from '../../common/errors';
import type { CommandRunner } from './command-runner';
import { removeBridge } from './host-bridge';

/** Removes what one part made on the host; throws with what is left and how to remove it. */
export type ResetHook = () => Promise<void>;

export interface HostResetReply {
  /** Hooks that ran and succeeded, by name. */
  done: string[];
  /** Hooks that failed: name and message. */
  failed: { name: string; error: string }[];
  /** True: the bridge and its rules go when the router stops. */
  bridgeOnStop: boolean;
}

export class HostReset {
  private readonly hooks = new Map<string, ResetHook>();
  private bridgeRequested = false;

  constructor(private readonly runner: CommandRunner, private readonly logger: Logger, private readonly bridge: string) {}

  /** Registers `hook` under `name` (e.g. "docker-plugin"); returns a function that removes it. */
  addHook(name: string, hook: ResetHook): () => void {
    this.hooks.set(name, hook);
    return () => {
      if (this.hooks.get(name) === hook) this.hooks.delete(name);
    };
  }

  /** Runs every hook now, and has the bridge removed at the next stop. */
  async request(): Promise<HostResetReply> {
    const reply: HostResetReply = { done: [], failed: [], bridgeOnStop: true };
    for (const [name, hook] of this.hooks) {
      try {
        await hook();
        reply.done.push(name);
      } catch (err) {
        this.logger.error('reset: cannot remove what a part made on the host', { part: name, error: errorMessage(err) });
        reply.failed.push({ name, error: errorMessage(err) });
      }
    }
    this.bridgeRequested = true;
    this.logger.info('reset requested: the bridge goes when the router stops', { bridge: this.bridge });
    return reply;
  }

  /** At shutdown, after the data plane closed its TAP: the bridge and its rules, when a reset asked for it. */
  async onStop(): Promise<void> {
    if (!this.bridgeRequested) return;
    try {
      await removeBridge({ bridge: this.bridge }, this.runner, this.logger);
      this.logger.info('reset: bridge removed', { bridge: this.bridge });
    } catch (err) {
      this.logger.error('reset: cannot remove the bridge', { bridge: this.bridge, error: errorMessage(err), fix: `ip link del ${this.bridge}` });
    }
  }
}
