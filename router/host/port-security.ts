// Port security: a container speaks only for itself. Without it any attached
// container could send with a neighbour's source MAC or IP, or answer ARP or
// IPv6 neighbour discovery for the neighbour's address: its own host's bridge
// would believe it, and every router's MAC table would move the victim's MAC
// to the spoofer's peer, so the victim's traffic from the whole mesh would go
// to the spoofer until the victim spoke again. Weave Net, Docker's bridge and
// flannel allow that; OpenStack's port security and Calico do not, nor do we.
//
// One nftables table of ours, `bridge weave-ports` (port-security-rules.ts
// builds it), hooked at bridge prerouting ahead of everything else: each
// container's host end of the veth (the one port where its frames enter the
// bridge) jumps to a chain of its own that lets through only the container's
// own MAC and addresses, in Ethernet, IP, ARP and neighbour discovery. A
// frame from a container port without one (a veth that appeared without an
// attachment we know) is dropped too: fail closed. Other ports (the router's
// TAP, the fast path's, anything not ours) pass untouched.
//
// The guard builds the whole table at start, then applies only what changed
// at each attach or detach, each in one transaction: no moment without it,
// and an attach costs the same with 1 or 1000 neighbours. Transactions run
// in-process through libnftables (native/nft.c, a fraction of a millisecond,
// where spawning nft cost 15-20 ms of every attach; unloaded again 10 s after
// the last, as it costs 3-4 MB resident), else through the nft command. Any
// failure rebuilds the whole table from the attachments, so the kernel never
// drifts from the record for long. Off with `--no-port-security`
// (containers that route for others: VPNs, nested bridges), or for one
// container with `weave attach --no-port-security`: its port is accepted
// whatever it sends.

import type { Clock, Timer } from '../../common/clock';
import type { Logger } from '../../common/logger';
import { silentLogger } from '../../common/logger';
import { errorMessage } from '../../common/errors';
import type { CommandRunner } from './command-runner';
import { runQuietly } from './command-runner';
import type { HostAddon } from './host-addon';
import { loadHostAddon } from './host-addon';
import type { GuardedPort, PortPlan } from './port-security-rules';
import { PORT_SECURITY_FAMILY, PORT_SECURITY_TABLE, changeScript, planPorts, tableScript } from './port-security-rules';

/** How often the table's existence is checked: `nft flush ruleset` (a firewall reload) would silently remove it. */
export const PORT_SECURITY_RECHECK_MS = 30_000;

/** Applies an nft JSON transaction: null when applied, else nft's error. */
export type NftApply = (script: string) => Promise<string | null>;

/** libnftables is unloaded this long after the last transaction: attaches come in bursts, and it costs 3-4 MB resident. */
export const NFT_UNLOAD_AFTER_MS = 10_000;

/**
 * libnftables in-process when the addon and the library load, else the nft
 * command through `runner` (whose failure to start, e.g. no nft at all, is an
 * error like any other). The library is unloaded NFT_UNLOAD_AFTER_MS after
 * the last transaction, on `clock`.
 */
export function nftApplier(
  runner: CommandRunner, clock: Clock, logger: Logger = silentLogger,
  load: () => Pick<HostAddon, 'nftRun' | 'nftUnload'> = loadHostAddon,
): NftApply {
  let addon: Pick<HostAddon, 'nftRun' | 'nftUnload'> | null | undefined;
  let unloadTimer: Timer | null = null;
  const fallBack = (err: unknown): void => {
    addon = null;
    logger.info('port security: libnftables not usable in-process; running nft instead', { error: errorMessage(err) });
  };
  return async (script) => {
    if (addon === undefined) {
      try {
        addon = load();
      } catch (err) {
        fallBack(err);
      }
    }
    const loaded = addon;
    if (loaded) {
      try {
        const result = loaded.nftRun(script);
        unloadTimer?.cancel();
        unloadTimer = clock.setTimer(NFT_UNLOAD_AFTER_MS, () => { unloadTimer = null; loaded.nftUnload(); });
        return result;
      } catch (err) {
        fallBack(err);
      }
    }
    // One argv element, not `-f -` (bridge-firewall.ts says why).
    const r = await runner.run('nft', ['-j', script], { allowFail: true }).catch((err: unknown) => ({ code: -1, stdout: '', stderr: errorMessage(err) }));
    return r.code === 0 ? null : (r.stderr.trim() || `nft exited ${r.code}`);
  };
}

export interface PortGuardStatus {
  /** Ports with a chain. */
  ports: number;
  /** Ports attached with port security off. */
  unguarded: number;
  /** Why the last change failed, or which ports had to be refused; null when all is well. */
  problem: string | null;
}

export interface PortGuardDeps {
  /** For the periodic check that the table is still there. */
  runner: CommandRunner;
  nft: NftApply;
  /** Every container port on this host now (weave attach, CNI, the Docker plugin). */
  ports: () => GuardedPort[];
  clock: Clock;
  logger?: Logger;
}

/**
 * Keeps the table equal to `ports()`: sync() after every attach and detach
 * (awaited before the attach is reported done, so a container never runs
 * unguarded), and a check every PORT_SECURITY_RECHECK_MS that puts the table
 * back if a firewall reload removed it. Syncs never overlap: one asked for
 * during another runs once after it, with the state of then.
 */
export class PortGuard {
  private running: Promise<void> | null = null;
  private again: Promise<void> | null = null;
  private timer: Timer | null = null;
  private closed = false;
  /** What the kernel's table holds, as far as we know; null: unknown, rebuild it whole. */
  private applied: Map<string, PortPlan> | null = null;
  private last: PortGuardStatus = { ports: 0, unguarded: 0, problem: null };
  private readonly logger: Logger;

  constructor(private readonly deps: PortGuardDeps, private readonly recheckMs: number = PORT_SECURITY_RECHECK_MS) {
    this.logger = deps.logger ?? silentLogger;
  }

  /** Builds the table whole now and starts the periodic check. */
  async start(): Promise<void> {
    this.applied = null;
    await this.sync();
    this.schedule();
  }

  /** Brings the table to ports(); never throws (a failure is logged and shown in status()). */
  sync(): Promise<void> {
    if (this.running === null) {
      this.running = this.update().finally(() => { this.running = null; });
      return this.running;
    }
    if (this.again === null) {
      this.again = this.running.then(() => {
        this.again = null;
        return this.sync();
      });
    }
    return this.again;
  }

  status(): PortGuardStatus {
    return { ...this.last };
  }

  close(): void {
    this.closed = true;
    this.timer?.cancel();
    this.timer = null;
  }

  private async update(): Promise<void> {
    let wanted: ReturnType<typeof planPorts>;
    try {
      wanted = planPorts(this.deps.ports());
    } catch (err) {
      this.last = { ...this.last, problem: `cannot list the container ports: ${errorMessage(err)}` };
      this.logger.error('port security: cannot list the container ports', { error: errorMessage(err) });
      return;
    }
    for (const r of wanted.refused) this.logger.warn('port security: port left without a chain; its frames are dropped', r);
    let error: string | null = null;
    if (this.applied !== null) {
      const change = changeScript(this.applied, wanted.plans);
      error = change === null ? null : await this.deps.nft(change);
      if (error !== null) this.logger.warn('port security: a change failed; rebuilding the table', { error: firstLine(error) });
    }
    if (this.applied === null || error !== null) error = await this.deps.nft(tableScript(wanted.plans));
    if (error !== null) {
      this.applied = null;
      this.last = { ...this.last, problem: `port security not applied (containers may spoof each other's addresses): ${firstLine(error)}` };
      this.logger.error('port security: cannot apply the table', { error: firstLine(error) });
      return;
    }
    this.applied = wanted.plans;
    const plans = [...wanted.plans.values()];
    const guarded = plans.filter((p) => p.guarded).length;
    const refusedText = wanted.refused.map((x) => `${x.hostIfname} (${x.reason})`).join(', ');
    this.last = { ports: guarded, unguarded: plans.length - guarded, problem: wanted.refused.length > 0 ? `ports without a chain, their frames dropped: ${refusedText}` : null };
  }

  private schedule(): void {
    this.timer = this.deps.clock.setTimer(this.recheckMs, () => {
      if (this.closed) return;
      this.schedule();
      this.recheck().catch((err: unknown) => this.logger.warn('port security: re-check failed', { error: errorMessage(err) }));
    });
  }

  private async recheck(): Promise<void> {
    const r = await this.deps.runner.run('nft', ['list', 'table', PORT_SECURITY_FAMILY, PORT_SECURITY_TABLE], { allowFail: true });
    if (r.code === 0) return;
    this.logger.warn('port security: the table was gone (a firewall reload?); putting it back');
    this.applied = null;
    await this.sync();
  }
}

function firstLine(text: string): string {
  return text.trim().split('\n')[0] ?? text;
}

/** Removes the table if there is one (`weave reset`, `--no-port-security`); never throws. */
export async function removePortSecurity(runner: CommandRunner): Promise<void> {
  await runQuietly(runner, 'nft', ['delete', 'table', PORT_SECURITY_FAMILY, PORT_SECURITY_TABLE]);
}
