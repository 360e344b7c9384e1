// The daemon's side of the weave-net CNI plugin: ADD, CHECK, DEL and GC for
// one (container id, interface name) at a time, in a namespace the runtime
// names by path. ADD puts a veth on the weave bridge with its other end born
// in that namespace under the runtime's interface name, gets addresses from
// weave IPAM keyed on the container id (or takes those a delegated IPAM
// plugin gave), adds the overlay and multicast routes, records it all in
// cni.json and tells listeners (DNS). DEL undoes exactly that, from the
// record, whether or not the namespace still exists or the router restarted
// in between. The plumbing is ContainerLinks' (container-link.ts), as for
// `weave attach`; what differs is who names things and how long they live.
//
// It must never remove a link it did not make (only `vethwec<hash>` names
// derived from the key), never free addresses it did not obtain (delegated
// ones are the delegate's), and never leave half an ADD behind: each step is
// undone on failure, and an ADD cut short by a crash is undone at restart.
// Operations on one container run one at a time; different containers run
// side by side, so a container waiting for IPAM holds up no other.

import type { CniAddRequest, CniAttachment, CniCheckRequest, CniDelReply, CniDelRequest, CniDns, CniGcReply, CniGcRequest } from '../../common/cni-wire';
import { CodedError, errorMessage } from '../../common/errors';
import type { Logger } from '../../common/logger';
import { parseAttachAddresses, parseRouteCidr } from './attach-address';
import type { AttachedContainer } from './attached-container';
import type { CniCheckProbe } from './cni-check';
import { checkAttachment } from './cni-check';
import type { CniRecord, CniStateStore } from './cni-state';
import { CNI_STATE_FILE, cniHostIfname, cniView, formatCniState, parseCniState } from './cni-state';
import type { CommandRunner } from './command-runner';
import { ContainerLinks, MULTICAST_ROUTE, randomMac } from './container-link';
import type { Netlink } from './netlink-socket';
import { nativeNetlink } from './netlink-socket';
import type { GuardedPort } from './port-security-rules';
import type { HostFs } from './container-ref';
import { procHostFs } from './container-ref';

/** What the API turns into HTTP statuses and the plugin into CNI error codes. */
export type CniErrorCode = 'config' | 'no-netns' | 'not-found' | 'drift' | 'waiting' | 'io';

export class CniError extends CodedError<CniErrorCode> {
  override readonly name = 'CniError';
}

/** Weave IPAM as the endpoint needs it; cli/daemon.ts wires it. */
export interface CniAddressSource {
  /** Addresses for the container (IPv4, and its IPv6 twin with dual stack); throws a CodedError 'timeout' when IPAM is not ready in time. */
  obtain(containerId: string, waitMs: number): Promise<string[]>;
  /** Frees every address IPAM holds for the container; returns them. */
  release(containerId: string): string[];
}

export type CniGoneReason = 'del' | 'gc' | 'gone';

export interface CniListener {
  onAttached?(a: CniAttachment): void | Promise<void>;
  onDetached?(a: CniAttachment, reason: CniGoneReason): void | Promise<void>;
  /** An ADD's port is about to come up (MAC and addresses chosen, in ports()) or failed: as ContainerListener's. */
  onPortsChanging?(): void | Promise<void>;
}

export interface CniEndpointDeps {
  runner: CommandRunner;
  logger: Logger;
  store: CniStateStore;
  /** Null: no weave IPAM here, so only configs with a delegated `ipam` section work. */
  addresses: CniAddressSource | null;
  /** Weave DNS as the runtime should configure it; null when DNS does not run. */
  dns?: () => CniDns | null;
  hostFs?: HostFs;
  newMac?: () => string;
  sleep?: (ms: number) => Promise<void>;
  /** rtnetlink for the links; default the native addon's, tests pass a fake. */
  netlink?: Netlink;
}

export interface CniEndpointOptions {
  bridge: string;
  mtu: number;
  /** Routed via the container's interface (IPAM ranges, DNS link-local); 224.0.0.0/4 is always added. */
  overlayRoutes: string[];
  /** Default /proc/self/ns/net; tests acting as a host in another namespace pass its path. */
  hostNetns?: string;
}

export { CNI_STATE_FILE };
/** How long an ADD waits for weave IPAM unless the plugin's config says otherwise. */
export const DEFAULT_CNI_IPAM_WAIT_MS = 10_000;

export class CniEndpoint {
  private readonly records: CniRecord[] = [];
  private readonly links = new Map<string, ContainerLinks>();
  private readonly queues = new Map<string, Promise<unknown>>();
  private readonly listeners: CniListener[] = [];
  private readonly hostFs: HostFs;
  private readonly hostNetns: string;
  private readonly routes: string[];

  constructor(private readonly deps: CniEndpointDeps, private readonly opts: CniEndpointOptions) {
    this.hostFs = deps.hostFs ?? procHostFs;
    this.hostNetns = opts.hostNetns ?? '/proc/self/ns/net';
    this.routes = [...new Set([...opts.overlayRoutes.map((r) => parseRouteCidr(r)), MULTICAST_ROUTE])];
  }

  addListener(l: CniListener): void {
    this.listeners.push(l);
  }

  list(): CniAttachment[] {
    return this.records.filter((r) => r.state === 'attached').map((r) => this.view(r));
  }

  /** The same, as `weave ps` lists them beside weave attach's (ContainerManager.addEndpointSource). */
  attached(): AttachedContainer[] {
    return this.records.filter((r) => r.state === 'attached').map((r) => ({
      id: `cni:${r.containerId}/${r.ifName}`, name: r.dnsName ?? r.network, kind: 'cni' as const, ifname: r.ifName, mac: r.mac,
      addresses: r.addresses.map((a) => a.address), hostIfname: r.hostIfname, pid: null, joined: 'cni' as const,
      ...(r.portSecurity === false ? { portSecurity: false as const } : {}),
    }));
  }

  /** Ports for port security: attached ones, and an ADD's whose MAC is chosen but not yet announced. */
  ports(): GuardedPort[] {
    return this.records.filter((r) => r.state === 'attached' || (r.state === 'adding' && r.mac !== '')).map((r) => ({
      hostIfname: r.hostIfname, mac: r.mac, addresses: r.addresses.map((a) => a.address), ...(r.portSecurity === false ? { portSecurity: false } : {}),
    }));
  }

  add(req: CniAddRequest & { ipamWaitMs?: number }): Promise<CniAttachment> {
    return this.serialize(req.containerId, () => this.handleAdd(req));
  }

  del(req: CniDelRequest): Promise<CniDelReply> {
    return this.serialize(req.containerId, () => this.handleDel(req));
  }

  check(req: CniCheckRequest, probe?: CniCheckProbe): Promise<CniAttachment> {
    return this.serialize(req.containerId, async () => {
      const r = this.find(req.containerId, req.ifName);
      if (r === undefined || r.state !== 'attached') throw new CniError('not-found', `no weave-net attachment for container ${req.containerId} interface ${req.ifName}`);
      const nsId = this.namespaceId(req.netns);
      if (nsId === null) throw new CniError('no-netns', `network namespace ${req.netns} does not exist`);
      if (nsId !== r.nsId || req.netns !== r.netns) throw new CniError('drift', `${req.netns} is not the namespace ${r.containerId}/${r.ifName} was added in (${r.netns})`);
      const problems = await checkAttachment(probe ?? { runner: this.deps.runner }, r, { bridge: this.opts.bridge, routes: this.routes });
      if (problems.length > 0) throw new CniError('drift', `${r.containerId}/${r.ifName}: ${problems.join('; ')}`);
      return this.view(r);
    });
  }

  /** Removes every attachment of `network` the runtime no longer lists. */
  async gc(req: CniGcRequest): Promise<CniGcReply> {
    const valid = new Set(req.valid.map((v) => `${v.containerId}/${v.ifName}`));
    const stale = this.records.filter((r) => r.network === req.network && !valid.has(`${r.containerId}/${r.ifName}`));
    const removed: CniGcReply['removed'] = [];
    for (const r of stale) {
      const res = await this.serialize(r.containerId, () => this.handleDel({ version: 1, containerId: r.containerId, ifName: r.ifName }, 'gc'));
      if (res.removed) removed.push({ containerId: r.containerId, ifName: r.ifName });
    }
    return { removed };
  }

  /**
   * Reads the record a previous daemon left: attachments whose namespace and
   * veth are still there are kept (a DEL later frees them); the rest, and
   * ADDs cut short, are undone now. Returns what is attached.
   */
  async restore(): Promise<CniAttachment[]> {
    const text = this.deps.store.load();
    if (text === null) return [];
    let parsed: ReturnType<typeof parseCniState>;
    try {
      parsed = parseCniState(text);
    } catch (err) {
      this.deps.logger.warn('ignoring unreadable CNI record', { file: CNI_STATE_FILE, error: errorMessage(err) });
      return [];
    }
    for (const p of parsed.problems) this.deps.logger.warn('dropping a bad CNI record entry', { file: CNI_STATE_FILE, error: p });
    for (const r of parsed.records) {
      this.records.push(r);
      const alive = r.state === 'attached' && this.namespaceId(r.netns) === r.nsId && (await this.linksFor(r.ifName).exists(r.hostIfname)) === true;
      if (!alive) {
        this.deps.logger.info('CNI attachment gone while the router was away; freeing it', { container: r.containerId.slice(0, 12), ifname: r.ifName });
        await this.undo(r, 'gone');
      }
    }
    this.save();
    return this.list();
  }

  // -------------------------------------------------------------------------

  private async handleAdd(req: CniAddRequest & { ipamWaitMs?: number }): Promise<CniAttachment> {
    const existing = this.find(req.containerId, req.ifName);
    if (existing !== undefined) {
      const same = existing.state === 'attached' && existing.netns === req.netns && this.namespaceId(req.netns) === existing.nsId
        && (await this.linksFor(req.ifName).exists(existing.hostIfname)) === true;
      // ADD twice for the same key: the spec forbids it; answering with what is there is harmless.
      if (same) return this.view(existing);
      await this.undo(existing, 'gone');
      this.save();
    }
    const other = this.records.find((r) => r.containerId === req.containerId);
    if (other !== undefined) {
      throw new CniError('config', `container ${req.containerId} already has weave-net interface ${other.ifName}; weave IPAM keys addresses on the container id, so one per container`);
    }
    const nsId = this.namespaceId(req.netns);
    if (nsId === null) throw new CniError('no-netns', `network namespace ${req.netns} does not exist`);
    const hostNs = this.namespaceId(this.hostNetns);
    // Every namespace file is on nsfs, one device: anything else is not a namespace.
    if (hostNs !== null && nsId.split(':')[0] !== hostNs.split(':')[0]) throw new CniError('config', `${req.netns} is not a network namespace`);
    if (nsId === hostNs) throw new CniError('config', `${req.netns} is the host's own network namespace; there is nothing to attach`);
    if (req.delegated === undefined && this.deps.addresses === null) {
      throw new CniError('config', 'weave IPAM does not run on this router (--ipalloc-range none?); give the network config an "ipam" section');
    }
    const record: CniRecord = {
      containerId: req.containerId, ifName: req.ifName, netns: req.netns, nsId, network: req.network,
      hostIfname: cniHostIfname(req.containerId, req.ifName), mac: '', addresses: [],
      routes: req.delegated?.routes ?? [], dnsName: req.dnsName,
      ipam: req.delegated === undefined ? 'weave' : 'delegated', state: 'adding',
      ...(req.portSecurity === false ? { portSecurity: false } : {}),
    };
    // Written before anything exists, so a crash from here on is undone at the next start.
    this.records.push(record);
    this.save();
    try {
      record.addresses = req.delegated?.addresses ?? (await this.obtain(req.containerId, req.ipamWaitMs ?? DEFAULT_CNI_IPAM_WAIT_MS)).map((address) => ({ address }));
      this.save();
      const links = this.linksFor(req.ifName);
      // The name is ours by construction: one left over is from an ADD cut short.
      if ((await links.exists(record.hostIfname)) !== false) await links.remove(record.hostIfname);
      const cidrs = parseAttachAddresses(record.addresses.map((a) => a.address), true);
      // Port security learns the port before ethwe announces its MAC, which it would otherwise drop.
      record.mac = links.chooseMac();
      await this.portsChanging();
      try {
        record.mac = await links.create({ name: `${req.containerId.slice(0, 12)}/${req.ifName}`, netnsPath: req.netns }, record.hostIfname, cidrs, undefined, record.mac);
      } catch (err) {
        if (err instanceof CodedError && err.code === 'config') throw new CniError('config', err.message);
        throw new CniError('io', errorMessage(err));
      }
      await this.addDelegatedRoutes(record);
      record.state = 'attached';
      this.save();
    } catch (err) {
      await this.undo(record, null);
      this.save();
      throw err;
    }
    this.deps.logger.info('CNI attachment added', { container: req.containerId.slice(0, 12), ifname: req.ifName, veth: record.hostIfname, addresses: record.addresses.map((a) => a.address).join(',') });
    const view = this.view(record);
    for (const l of this.listeners) await this.call(() => l.onAttached?.(view));
    return view;
  }

  private async handleDel(req: CniDelRequest, reason: CniGoneReason = 'del'): Promise<CniDelReply> {
    const r = this.find(req.containerId, req.ifName);
    if (r === undefined) return { removed: false, released: [] };
    const released = await this.undo(r, reason);
    this.save();
    this.deps.logger.info('CNI attachment deleted', { container: r.containerId.slice(0, 12), ifname: r.ifName, reason });
    return { removed: true, released };
  }

  /**
   * Takes a record and everything it made away: the veth (with the namespace
   * gone it went already), weave IPAM's addresses, and tells listeners when it
   * was attached (`reason` null: a failed ADD, nobody heard of it).
   */
  private async undo(r: CniRecord, reason: CniGoneReason | null): Promise<string[]> {
    const links = this.linksFor(r.ifName);
    try {
      await links.remove(r.hostIfname);
    } catch (err) {
      this.deps.logger.error('cannot delete the veth of a CNI attachment', { veth: r.hostIfname, error: errorMessage(err) });
    }
    let released: string[] = [];
    if (r.ipam === 'weave' && this.deps.addresses !== null) {
      try {
        released = this.deps.addresses.release(r.containerId);
      } catch (err) {
        this.deps.logger.warn('cannot release the addresses of a CNI attachment', { container: r.containerId.slice(0, 12), error: errorMessage(err) });
      }
    }
    const i = this.records.indexOf(r);
    if (i >= 0) this.records.splice(i, 1);
    if (reason !== null && r.state === 'attached') {
      const view = this.view(r);
      for (const l of this.listeners) await this.call(() => l.onDetached?.(view, reason));
    } else if (r.state === 'adding' && r.mac !== '') {
      // An ADD that failed after its port was announced to port security: the port goes again.
      await this.portsChanging();
    }
    return released;
  }

  private async obtain(containerId: string, waitMs: number): Promise<string[]> {
    const source = this.deps.addresses as CniAddressSource;
    try {
      return await source.obtain(containerId, waitMs);
    } catch (err) {
      if (err instanceof CodedError && (err.code === 'timeout' || err.code === 'shutdown')) throw new CniError('waiting', `weave IPAM is not ready: ${err.message}`);
      if (err instanceof CodedError && (err.code === 'config' || err.code === 'full' || err.code === 'conflict')) throw new CniError('config', `weave IPAM: ${err.message}`);
      throw new CniError('io', `weave IPAM: ${errorMessage(err)}`);
    }
  }

  /** Routes a delegated IPAM plugin asked for, via the container's interface. */
  private async addDelegatedRoutes(r: CniRecord): Promise<void> {
    for (const route of r.routes) {
      const v6 = route.dst.includes(':');
      const args = ['--net=' + r.netns, 'ip', ...(v6 ? ['-6'] : []), 'route', 'add', route.dst, ...(route.gw !== undefined ? ['via', route.gw] : []), 'dev', r.ifName];
      const res = await this.deps.runner.run('nsenter', args, { allowFail: true });
      if (res.code !== 0 && !/File exists/i.test(res.stderr)) throw new CniError('io', `cannot add route ${route.dst} in ${r.netns}: ${res.stderr.trim()}`);
    }
  }

  private view(r: CniRecord): CniAttachment {
    return cniView(r, this.routes, this.deps.dns?.() ?? null);
  }

  private find(containerId: string, ifName: string): CniRecord | undefined {
    return this.records.find((r) => r.containerId === containerId && r.ifName === ifName);
  }

  private linksFor(ifName: string): ContainerLinks {
    let l = this.links.get(ifName);
    if (l === undefined) {
      l = new ContainerLinks(
        {
          runner: this.deps.runner,
          netlink: this.deps.netlink ?? nativeNetlink,
          logger: this.deps.logger,
          newMac: this.deps.newMac ?? randomMac,
          sleep: this.deps.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms))),
        },
        { bridge: this.opts.bridge, mtu: this.opts.mtu, overlayRoutes: this.opts.overlayRoutes, ifname: ifName },
      );
      this.links.set(ifName, l);
    }
    return l;
  }

  private namespaceId(nsPath: string): string | null {
    try {
      return this.hostFs.namespaceId(nsPath);
    } catch (err) {
      throw new CniError('io', errorMessage(err));
    }
  }

  private save(): void {
    try {
      this.deps.store.save(formatCniState(this.records));
    } catch (err) {
      this.deps.logger.error('cannot save the CNI record', { file: CNI_STATE_FILE, error: errorMessage(err) });
    }
  }

  private async portsChanging(): Promise<void> {
    for (const l of this.listeners) await this.call(() => l.onPortsChanging?.());
  }

  private async call(fn: () => void | Promise<void> | undefined): Promise<void> {
    try {
      await fn();
    } catch (err) {
      this.deps.logger.error('CNI listener failed', { error: errorMessage(err) });
    }
  }

  /** One operation per container at a time; the chain is dropped once idle. */
  private serialize<T>(containerId: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.queues.get(containerId) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.queues.set(containerId, tail);
    void tail.then(() => {
      if (this.queues.get(containerId) === tail) this.queues.delete(containerId);
    });
    return next;
  }
}
