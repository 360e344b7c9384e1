// The IPAM half of the Docker plugin (`--ipam-driver weave`): pools are
// subnets of weave IPAM's range, addresses come from weave IPAM. Docker's
// IPAM calls name no container, so each address gets an owner of its own in
// weave IPAM, remembered in the plugin's record (docker-plugin-state.ts).
//
// Restart keeps the address. Docker releases a container's address when it
// stops and asks for one again when it starts, naming nobody both times. An
// address whose container is known (from its endpoint) is therefore parked
// rather than freed: weave IPAM keeps it for the grace period, and a request
// for an address in that pool within RESTART_WINDOW_MS of the release gets
// the most recently parked one back (a `docker restart` asks within
// milliseconds). A container that is removed frees its parked address at
// once; one that stays stopped frees it when the grace period ends.
//
// It must never hand out an address weave IPAM did not give it, nor free one
// it does not hold. No I/O of its own: weave IPAM comes in as an interface.

import { randomBytes } from 'node:crypto';
import { CodedError, errorMessage } from '../../common/errors';
import { Cidr, parseCidr } from '../../common/ip-cidr';
import { formatIp } from '../../common/ip';
import type { PluginAddress, PluginState } from './docker-plugin-state';
import type { RequestAddressRequest, RequestPoolRequest } from './docker-plugin-wire';
import { GATEWAY_DATA_KEY, GLOBAL_ADDRESS_SPACE, LOCAL_ADDRESS_SPACE, PluginError } from './docker-plugin-wire';

/** Weave IPAM as the plugin needs it; cli/ wires it. */
export interface PluginAddressSource {
  /** Where a network without --subnet takes its addresses ("10.32.0.0/12"). */
  defaultSubnet(): string;
  /** The whole range weave IPAM manages; a --subnet must lie inside it. */
  range(): string;
  /** A fresh address for `owner` in `subnet`, with the subnet's prefix. */
  allocate(owner: string, subnet: string): Promise<string>;
  /** Records that `owner` uses `cidr` (or takes back one kept for it through a grace period). */
  claim(owner: string, cidr: string): Promise<string>;
  /** Frees what `owner` holds: now (graceMs 0) or once graceMs has passed. */
  release(owner: string, graceMs: number): void;
}

export interface PluginIpamOptions {
  /** How long a parked address stays reserved for its container. */
  graceMs: number;
}

/** A restarted container asks again within milliseconds; a minute allows a slow stop. */
export const RESTART_WINDOW_MS = 60_000;
const POOL_PREFIX = 'weave:';

/** PoolID "weave:10.32.0.0/12" or "weave:10.32.0.0/12:10.32.4.0/24" (a --ip-range inside the subnet). */
export function poolIdOf(subnet: Cidr, range: Cidr | null): string {
  return `${POOL_PREFIX}${subnet.toString()}${range !== null && !range.equals(subnet) ? `:${range.toString()}` : ''}`;
}

export function parsePoolId(poolId: string): { subnet: Cidr; range: Cidr } {
  const refuse = (): PluginError => new PluginError('bad-request', `unknown PoolID ${JSON.stringify(poolId.slice(0, 80))}: not one the weave IPAM driver gave out`);
  if (!poolId.startsWith(POOL_PREFIX) || poolId.length > 100) throw refuse();
  const parts = poolId.slice(POOL_PREFIX.length).split(':');
  if (parts.length > 2) throw refuse();
  try {
    const subnet = parseCidr(parts[0] ?? '', 4);
    const range = parts[1] === undefined ? subnet : parseCidr(parts[1], 4);
    if (!subnet.covers(range)) throw refuse();
    return { subnet, range };
  } catch {
    throw refuse();
  }
}

export class PluginIpam {
  constructor(
    private readonly state: PluginState,
    private readonly source: PluginAddressSource,
    private readonly save: () => void,
    private readonly now: () => number,
    private readonly opts: PluginIpamOptions,
  ) {}

  capabilities(): { RequiresMACAddress: boolean; RequiresRequestReplay: boolean } {
    return { RequiresMACAddress: false, RequiresRequestReplay: false };
  }

  addressSpaces(): { LocalDefaultAddressSpace: string; GlobalDefaultAddressSpace: string } {
    return { LocalDefaultAddressSpace: LOCAL_ADDRESS_SPACE, GlobalDefaultAddressSpace: GLOBAL_ADDRESS_SPACE };
  }

  /**
   * A pool is a subnet inside weave IPAM's range; its "gateway" is the
   * network address, which nothing uses (containers get no default route from
   * us), so Docker does not ask for a gateway address of its own.
   */
  requestPool(req: RequestPoolRequest): { PoolID: string; Pool: string; Data: Record<string, string> } {
    if (req.v6) throw new PluginError('refused', 'the weave IPAM driver gives IPv4 addresses only: create the network without --ipv6');
    const range = this.parse(this.source.range(), 'the IPAM range');
    const subnet = req.pool === null ? this.parse(this.source.defaultSubnet(), 'the default subnet') : parseCidr(req.pool, 4);
    if (!range.covers(subnet)) {
      throw new PluginError('refused', `subnet ${subnet.toString()} is outside weave's IPAM range ${range.toString()}: pick a --subnet inside it (weave launch --ipalloc-range sets the range)`);
    }
    const sub = req.subPool === null ? null : parseCidr(req.subPool, 4);
    if (sub !== null && !subnet.covers(sub)) throw new PluginError('refused', `--ip-range ${sub.toString()} is outside --subnet ${subnet.toString()}`);
    return { PoolID: poolIdOf(subnet, sub), Pool: subnet.toString(), Data: { [GATEWAY_DATA_KEY]: `${formatIp(subnet.network)}/${subnet.prefixLen}` } };
  }

  releasePool(poolId: string): Record<string, never> {
    parsePoolId(poolId);
    return {};
  }

  async requestAddress(req: RequestAddressRequest): Promise<{ Address: string; Data: Record<string, string> }> {
    const pool = parsePoolId(req.poolId);
    this.expireParked();
    let cidr: string;
    if (req.address !== null) {
      cidr = `${req.address}/${pool.subnet.prefixLen}`;
      const held = this.state.addresses.find((a) => a.cidr === cidr);
      if (held !== undefined && held.parkedAtMs === null) throw new PluginError('refused', `address ${req.address} is in use by another endpoint of the weave network`);
      if (held !== undefined) {
        await this.revive(held);
      } else {
        const owner = newOwner();
        await this.call(() => this.source.claim(owner, cidr), `cannot take ${cidr}`);
        this.state.addresses.push({ cidr, poolId: req.poolId, owner, container: null, parkedAtMs: null });
      }
    } else {
      const parked = this.restartCandidate(req.poolId);
      if (parked !== null) {
        await this.revive(parked);
        cidr = parked.cidr;
      } else {
        const owner = newOwner();
        const got = await this.call(() => this.source.allocate(owner, pool.range.toString()), `no address in ${pool.range.toString()}`);
        // Allocated in the --ip-range; the interface gets the subnet's prefix.
        cidr = `${got.slice(0, got.indexOf('/'))}/${pool.subnet.prefixLen}`;
        this.state.addresses.push({ cidr, poolId: req.poolId, owner, container: null, parkedAtMs: null });
      }
    }
    this.save();
    return { Address: cidr, Data: {} };
  }

  /**
   * Docker is done with the address. One whose container we know is parked
   * for that container's restart; any other is freed now. Unknown: nothing to do.
   */
  releaseAddress(poolId: string, address: string): Record<string, never> {
    parsePoolId(poolId);
    const a = this.state.addresses.find((x) => x.cidr.slice(0, x.cidr.indexOf('/')) === address && x.parkedAtMs === null);
    if (a === undefined) return {};
    if (a.container !== null && this.opts.graceMs > 0) {
      a.parkedAtMs = this.now();
      this.source.release(a.owner, this.opts.graceMs);
    } else {
      this.forget(a);
    }
    this.save();
    return {};
  }

  /** The container is gone for good (docker rm): its parked addresses are free now. */
  containerRemoved(containerId: string): string[] {
    const gone = this.state.addresses.filter((a) => a.parkedAtMs !== null && a.container?.id === containerId);
    for (const a of gone) this.forget(a);
    if (gone.length > 0) this.save();
    return gone.map((a) => a.cidr);
  }

  /** Which container an address belongs to, as its endpoint learned. */
  bindContainer(cidr: string, container: PluginAddress['container']): void {
    const a = this.state.addresses.find((x) => x.cidr === cidr && x.parkedAtMs === null);
    if (a !== undefined && (a.container?.id !== container?.id)) {
      a.container = container;
      this.save();
    }
  }

  /** Addresses in use (not parked). */
  inUse(): string[] {
    return this.state.addresses.filter((a) => a.parkedAtMs === null).map((a) => a.cidr);
  }

  // -------------------------------------------------------------------------

  private restartCandidate(poolId: string): PluginAddress | null {
    const since = this.now() - Math.min(RESTART_WINDOW_MS, this.opts.graceMs);
    let best: PluginAddress | null = null;
    for (const a of this.state.addresses) {
      if (a.poolId !== poolId || a.parkedAtMs === null || a.parkedAtMs < since) continue;
      if (best === null || (best.parkedAtMs ?? 0) < a.parkedAtMs) best = a;
    }
    return best;
  }

  private async revive(a: PluginAddress): Promise<void> {
    await this.call(() => this.source.claim(a.owner, a.cidr), `cannot take ${a.cidr} back`);
    a.parkedAtMs = null;
  }

  /** Weave IPAM freed parked addresses whose grace ended; so do we. */
  private expireParked(): void {
    const limit = this.now() - this.opts.graceMs;
    const expired = this.state.addresses.filter((a) => a.parkedAtMs !== null && a.parkedAtMs <= limit);
    for (const a of expired) this.state.addresses.splice(this.state.addresses.indexOf(a), 1);
  }

  private forget(a: PluginAddress): void {
    try {
      this.source.release(a.owner, 0);
    } catch {
      // Not held any more (an expired grace period): nothing to free.
    }
    const i = this.state.addresses.indexOf(a);
    if (i >= 0) this.state.addresses.splice(i, 1);
  }

  private parse(text: string, what: string): Cidr {
    try {
      return parseCidr(text, 4);
    } catch (err) {
      throw new PluginError('unavailable', `weave IPAM has no usable ${what} (${errorMessage(err)})`);
    }
  }

  private async call<T>(fn: () => Promise<T>, what: string): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      const code = err instanceof CodedError ? String(err.code) : '';
      throw new PluginError(code === 'timeout' || code === 'shutdown' ? 'unavailable' : 'refused', `weave IPAM: ${what}: ${errorMessage(err)}`);
    }
  }
}

function newOwner(): string {
  return `docker-plugin:${randomBytes(8).toString('hex')}`;
}
