// Host exposure (`weave expose` / `weave hide`): gives this host addresses on
// the overlay, by putting them on the `weave` bridge, and lets containers'
// traffic leave the overlay through the host with its source masqueraded.
//
// It owns exactly:
// - the exposed addresses on the bridge (never any other address there: the
//   DNS link-local address and whatever an operator added stay untouched);
// - the nftables table `ip weave-expose` (one nat postrouting chain: from an
//   exposed subnet, to anywhere outside it, leaving by any device but the
//   bridge -> masquerade), replaced as a whole in one transaction; the rules
//   themselves are built in expose-rules.ts;
// - accept rules tagged `weave-expose:<bridge>` at the head of other tables'
//   forward base chains (bridge -> elsewhere, and the replies back), for the
//   same reason bridge-firewall.ts puts its accept there: an accept in a table
//   of our own cannot overrule another table's `policy drop`;
// - net.ipv4.ip_forward, when it was off: turned on while anything is exposed
//   and back off when the last address is hidden (recorded, so a restart
//   between the two still knows);
// - the record of the above (expose-state.ts), re-applied when the daemon
//   starts.
//
// Every change converges the host to the recorded set (apply()), so each
// operation is idempotent and hide removes exactly what expose made. It never
// imports ipam/ (docs/architecture.md): addresses come from an
// ExposeAddressSource that the composition root wires to IPAM. Only IPv4,
// like attach.

import type { Logger } from '../../common/logger';
import { silentLogger } from '../../common/logger';
import { RouterError } from '../mesh/errors';
import { errorMessage } from '../../common/errors';
import { ipOf, parseAttachCidr, parseRouteCidr } from './attach-address';
import type { CommandRunner } from './command-runner';
import { EXPOSE_TABLE, exposeComment, forwardAcceptRules, natTableCommands, nftScript } from './expose-rules';
import type { ExposeState } from './expose-state';
import { EMPTY_EXPOSE_STATE, MAX_EXPOSED_ADDRESSES, loadExposeState, saveExposeState } from './expose-state';
import { validateIfName } from './host-link';
import { listRuleset } from './nft-ruleset';
import type { FirewallChainRef } from './nft-ruleset';

/** Who holds the host's exposed addresses in an address allocator (Weave Net's name for it). */
export const EXPOSE_OWNER = 'weave:expose';
const IP_FORWARD_KEY = 'net.ipv4.ip_forward';
/** Families whose forward hook sees routed IPv4 packets. */
const FORWARD_FAMILIES = new Set(['ip', 'inet']);

/** Where exposed addresses come from; cli/daemon.ts backs it with IPAM. */
export interface ExposeAddressSource {
  /**
   * CIDRs for the host: each request is a CIDR (claimed), `net:CIDR` or
   * `net:default` (allocated there); none means one in the default subnet.
   * Asking again for what the host holds returns the same addresses.
   */
  obtain(requests: readonly string[]): Promise<string[]>;
  /** The host no longer uses these. */
  giveBack(cidrs: readonly string[]): void;
}

export interface HostExposerDeps {
  runner: CommandRunner;
  addresses: ExposeAddressSource;
  logger?: Logger;
}

export interface HostExposerOptions {
  bridge: string;
  datadir: string;
}

export class HostExposer {
  private state: ExposeState = { ...EMPTY_EXPOSE_STATE, addresses: [] };
  /** Operations run one at a time: each reads the state the previous one left. */
  private queue: Promise<unknown> = Promise.resolve();
  private readonly bridge: string;
  private readonly logger: Logger;

  constructor(private readonly deps: HostExposerDeps, private readonly opts: HostExposerOptions) {
    this.bridge = validateIfName(opts.bridge, 'bridge name');
    this.logger = deps.logger ?? silentLogger;
  }

  /** The exposed CIDRs. */
  exposed(): string[] {
    return [...this.state.addresses];
  }

  /**
   * At daemon start: re-applies what expose.json records (the bridge may
   * have lost its addresses, the firewall may have been reloaded), and has
   * the address source record the addresses again.
   */
  restore(): Promise<string[]> {
    return this.serial(async () => {
      this.state = loadExposeState(this.opts.datadir);
      if (this.state.addresses.length === 0 && !this.state.ipForwardEnabled) return [];
      await this.apply(this.state.addresses, this.state.addresses);
      if (this.state.addresses.length > 0) {
        this.logger.info('host exposure restored', { addr: this.state.addresses.join(',') });
        this.deps.addresses.obtain(this.state.addresses).catch((err: unknown) => {
          this.logger.warn('exposed addresses not recorded by the address allocator', { addr: this.state.addresses.join(','), error: errorMessage(err) });
        });
      }
      return this.exposed();
    });
  }

  /**
   * Puts back what a firewall reload or a flushed bridge took away since the
   * last change; the daemon calls it on a timer. Nothing to do when nothing is exposed.
   */
  recheck(): Promise<void> {
    return this.serial(async () => {
      if (this.state.addresses.length > 0) await this.apply(this.state.addresses, this.state.addresses);
    });
  }

  /**
   * Exposes the host on the requested addresses (see ExposeAddressSource;
   * none: one allocated in the default subnet) and returns them. Already
   * exposed addresses are not an error: the host is brought back in line
   * with the record either way. On failure the host is left as it was and
   * new addresses are given back.
   */
  expose(requests: readonly string[]): Promise<string[]> {
    return this.serial(async () => {
      const before = this.exposed();
      const obtained = await this.deps.addresses.obtain(requests);
      const sameIp = (c: string): string | undefined => before.find((b) => ipOf(b) === ipOf(c));
      let cidrs: string[];
      try {
        cidrs = obtained.map((c) => parseAttachCidr(c).cidr);
      } catch (err) {
        this.deps.addresses.giveBack(obtained.filter((c) => sameIp(c) === undefined));
        throw err;
      }
      const added = cidrs.filter((c) => !before.includes(c));
      // Allocators release by address, so one the host holds under another prefix is never given back.
      const fresh = added.filter((c) => sameIp(c) === undefined);
      const refuse = (err: Error): never => {
        if (fresh.length > 0) this.deps.addresses.giveBack(fresh);
        throw err;
      };
      const conflict = added.find((c) => sameIp(c) !== undefined);
      if (conflict !== undefined) refuse(RouterError.config(`${ipOf(conflict)} is already exposed as ${sameIp(conflict)}; hide it first to change its prefix`));
      if (before.length + added.length > MAX_EXPOSED_ADDRESSES) {
        refuse(RouterError.config(`exposing ${added.length} more addresses would make ${before.length + added.length}, over the limit of ${MAX_EXPOSED_ADDRESSES}`));
      }
      // Nothing new still converges: exposing again repairs a reloaded firewall or a recreated bridge.
      try {
        await this.apply([...before, ...added], before);
      } catch (err) {
        if (added.length === 0) throw err;
        await this.apply(before, [...before, ...added]).catch((undo: unknown) => {
          this.logger.error('could not undo a failed expose', { error: errorMessage(undo) });
        });
        refuse(err instanceof Error ? err : new Error(String(err)));
      }
      if (added.length > 0) this.logger.info('host exposed', { addr: added.join(',') });
      return cidrs;
    });
  }

  /**
   * Removes the given exposed addresses (CIDR or plain IP), or all of them,
   * with their NAT and forwarding rules, and gives them back. Returns what
   * was removed; hiding with nothing exposed is not an error, naming an
   * address that is not exposed is.
   */
  hide(requests: readonly string[] = []): Promise<string[]> {
    return this.serial(async () => {
      const before = this.exposed();
      let removed: string[];
      if (requests.length === 0) {
        removed = before;
      } else {
        removed = [];
        for (const r of requests) {
          const text = r.trim().startsWith('ip:') ? r.trim().slice(3) : r.trim();
          const hit = before.find((b) => b === text || ipOf(b) === text);
          if (hit === undefined) {
            throw RouterError.config(`${JSON.stringify(r)} is not exposed (exposed: ${before.length > 0 ? before.join(' ') : 'nothing'})`);
          }
          if (!removed.includes(hit)) removed.push(hit);
        }
      }
      // Also when nothing is recorded: a leftover ip_forward flag is undone here.
      await this.apply(before.filter((b) => !removed.includes(b)), before);
      if (removed.length > 0) {
        this.deps.addresses.giveBack(removed);
        this.logger.info('host hidden', { addr: removed.join(',') });
      }
      return removed;
    });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Converges the host to `want`: addresses in `had` but not in `want` leave
   * the bridge, those in `want` are added; the NAT table, the forward accepts
   * and ip_forward follow; the state file records the result. Each step is
   * idempotent, so running it again after a partial failure finishes the job.
   */
  private async apply(want: readonly string[], had: readonly string[]): Promise<void> {
    const exposing = want.length > 0;
    if (exposing && !this.state.ipForwardEnabled) {
      const r = await this.deps.runner.run('sysctl', ['-n', IP_FORWARD_KEY]);
      if (r.stdout.trim() === '0') {
        await this.deps.runner.run('sysctl', ['-q', '-w', `${IP_FORWARD_KEY}=1`]);
        this.state = { ...this.state, ipForwardEnabled: true };
        this.persist();
      }
    }

    const present = await this.bridgeAddresses();
    for (const cidr of had) {
      if (!want.includes(cidr) && present.has(cidr)) {
        await this.deps.runner.run('ip', ['addr', 'del', cidr, 'dev', this.bridge]);
        present.delete(cidr);
      }
    }
    // Deleting a primary address takes its secondaries with it (unless
    // promote_secondaries is set), so what remains is checked again.
    const after = had.some((c) => !want.includes(c)) ? await this.bridgeAddresses() : present;
    for (const cidr of want) {
      if (!after.has(cidr)) await this.deps.runner.run('ip', ['addr', 'add', cidr, 'dev', this.bridge]);
    }
    this.state = { ...this.state, addresses: [...want] };
    this.persist();

    const subnets = [...new Set(want.map((c) => parseRouteCidr(c)))];
    await this.deps.runner.run('nft', ['-j', nftScript(natTableCommands(this.bridge, subnets))]);
    await this.syncForwardAccepts(exposing);

    if (!exposing && this.state.ipForwardEnabled) {
      await this.deps.runner.run('sysctl', ['-q', '-w', `${IP_FORWARD_KEY}=0`]);
      this.state = { ...this.state, ipForwardEnabled: false };
      this.persist();
    }
  }

  private persist(): void {
    try {
      saveExposeState(this.opts.datadir, this.state);
    } catch (err) {
      throw new RouterError('io', `cannot record the exposed addresses in ${this.opts.datadir}: ${errorMessage(err)}`, { cause: err });
    }
  }

  /** IPv4 CIDRs on the bridge, as `ip -j addr` reports them. */
  private async bridgeAddresses(): Promise<Set<string>> {
    const r = await this.deps.runner.run('ip', ['-j', '-4', 'addr', 'show', 'dev', this.bridge]);
    let parsed: unknown;
    try {
      parsed = JSON.parse(r.stdout.trim() === '' ? '[]' : r.stdout);
    } catch (err) {
      throw new RouterError('io', `ip -j addr show dev ${this.bridge} printed something that is not JSON: ${errorMessage(err)}`);
    }
    const out = new Set<string>();
    for (const link of Array.isArray(parsed) ? (parsed as { addr_info?: unknown }[]) : []) {
      for (const a of Array.isArray(link?.addr_info) ? (link.addr_info as { family?: unknown; local?: unknown; prefixlen?: unknown }[]) : []) {
        if (a.family === 'inet' && typeof a.local === 'string' && typeof a.prefixlen === 'number') out.add(`${a.local}/${a.prefixlen}`);
      }
    }
    return out;
  }

  /**
   * Puts our two accept rules at the head of every ip/inet forward base chain
   * lacking them (exposing), or deletes every rule with our comment (not).
   * A chain we cannot change is logged, not fatal: a host without a forward
   * drop policy forwards anyway.
   */
  private async syncForwardAccepts(exposing: boolean): Promise<void> {
    const ruleset = await listRuleset(this.deps.runner);
    const comment = exposeComment(this.bridge);
    const ours = ruleset.rules.filter((r) => r.comment === comment);
    if (!exposing) {
      if (ours.length === 0) return;
      const deletes = ours.map((r) => ({ delete: { rule: { family: r.family, table: r.table, chain: r.chain, handle: r.handle } } }));
      await this.deps.runner.run('nft', ['-j', nftScript(deletes)]);
      return;
    }
    for (const chain of ruleset.chains) {
      if (chain.hook !== 'forward' || !FORWARD_FAMILIES.has(chain.family) || chain.table === EXPOSE_TABLE) continue;
      const ref: FirewallChainRef = { family: chain.family, table: chain.table, chain: chain.chain };
      const here = ours.filter((r) => r.family === ref.family && r.table === ref.table && r.chain === ref.chain);
      if (here.length === 2) continue;
      // One of the two (someone deleted the other): replace both, so the chain never holds duplicates.
      const cmds: unknown[] = here.map((r) => ({ delete: { rule: { ...ref, handle: r.handle } } }));
      for (const rule of forwardAcceptRules(ref, this.bridge)) cmds.push({ insert: { rule } });
      const r = await this.deps.runner.run('nft', ['-j', nftScript(cmds)], { allowFail: true });
      if (r.code !== 0) {
        this.logger.warn('firewall: cannot accept forwarding for exposed addresses; containers may not reach outside', {
          family: ref.family, table: ref.table, chain: ref.chain, error: r.stderr.trim().split('\n')[0] ?? `exit ${r.code}`,
        });
      }
    }
  }
}
