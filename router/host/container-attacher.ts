// One change to one container's attachment, carried out as a unit: create it
// (the veth with its addresses and routes), add addresses to it, or take some
// away; then record the result and tell listeners. The ContainerManager
// decides which change and when (resolving, conflict checks, IPAM, Docker
// events, restarts) and serializes them; this file only carries them out.
//
// It must never leave half an attach behind: each step pushes its undo, and a
// failure runs the undos in reverse before the error goes on, with the record
// as it was. A removal failing midway leaves the record saying exactly what is
// still there. It never touches a link or address it did not make.

import type { Logger } from '../../common/logger';
import { RouterError } from '../mesh/errors';
import { errorMessage } from '../../common/errors';
import type { AttachCidr } from './attach-address';
import { AttachSteps } from './attach-steps';
import { hasV6, ipOf } from './attach-address';
import type { AttachedContainer, AttachOptions, ContainerListeners } from './attached-container';
import { attachOptionsOf } from './attached-container';
import type { ContainerLinks } from './container-link';
import { CONTAINER_IFNAME, hostIfnameFor } from './container-link';
import type { ResolvedContainer } from './container-ref';
import type { Attachment, AttachmentRecord } from './container-state';
import { describeAttachment as describe, publicView } from './container-state';
import type { GuardedPort } from './port-security-rules';

type UndoStep = () => Promise<unknown>;

export class ContainerAttacher {
  /** The attach under way, from when its MAC is chosen until it is recorded or undone (the manager serializes attaches). */
  private pendingPort: GuardedPort | null = null;

  constructor(
    private readonly links: ContainerLinks,
    private readonly attachments: AttachmentRecord,
    private readonly listeners: ContainerListeners,
    private readonly logger: Logger,
  ) {}

  /**
   * Attaches `target` afresh with `wanted`. A stopped record of the same
   * Docker container is folded in: its remaining addresses, its DNS wishes
   * unless `dns` gives new ones.
   */
  async create(target: ResolvedContainer, wanted: AttachCidr[], dns: AttachOptions = {}, steps = new AttachSteps()): Promise<AttachedContainer> {
    const stale = this.attachments.all().find((a) => a.kind === 'docker' && a.id === target.id);
    const hostIf = hostIfnameFor(target.kind, target.kind === 'netns' ? target.name : (target.pid as number));
    const unguarded = dns.portSecurity === false || stale?.portSecurity === false;
    // Port security learns the port before ethwe announces its MAC, which it would otherwise drop.
    this.pendingPort = { hostIfname: hostIf, mac: this.links.chooseMac(), addresses: wanted.map((w) => w.cidr), ...(unguarded ? { portSecurity: false } : {}) };
    await this.listeners.portsChanging(target.name);
    steps.mark('ports');
    let mac: string;
    try {
      // create() refuses a host interface left over from an earlier attach (a config error naming it) and
      // cleans up after itself; from here on, deleting the veth undoes it all.
      mac = await this.links.create(target, hostIf, wanted, steps, this.pendingPort.mac);
    } catch (err) {
      await this.forgetPending(target.name);
      throw err;
    }
    const undo: UndoStep[] = [() => this.links.discard(hostIf)];
    try {
      const record: Attachment = {
        kind: target.kind,
        id: target.id,
        name: target.name,
        ref: target.kind === 'docker' ? target.name : target.id,
        pid: target.pid,
        netnsPath: target.netnsPath,
        nsId: target.nsId,
        hostIfname: hostIf,
        mac,
        addresses: wanted.map((w) => w.cidr),
        state: 'attached',
        // A stopped Docker container attached again keeps its DNS wishes unless new ones are given, and stays unguarded if it was.
        ...attachOptionsOf({
          ...(dns.dnsName !== undefined || dns.withoutDns === true || stale === undefined ? dns : stale),
          ...(unguarded ? { portSecurity: false } : {}),
        }),
      };
      if (stale !== undefined) {
        // A stopped Docker container attached again: fold its remaining reserved addresses in.
        this.attachments.forget(stale);
        const folded = stale.addresses.filter((c) => !record.addresses.some((r) => ipOf(r) === ipOf(c)));
        if (hasV6(folded) && !hasV6(record.addresses)) await this.links.enableIpv6(target.netnsPath);
        for (const c of folded) {
          await this.links.addAddress(target.netnsPath, c);
          record.addresses.push(c);
        }
        await this.links.ensureRoutes(target.netnsPath, hasV6(record.addresses));
      }
      this.attachments.add(record);
      this.pendingPort = null;
      this.attachments.save();
      steps.mark('record');
      this.logger.info('attached container', { container: record.name, veth: hostIf, mac, addresses: record.addresses.join(',') });
      await this.listeners.attached(publicView(record), record.addresses, steps);
      return publicView(record);
    } catch (err) {
      await this.rollback(undo, err);
      if (stale !== undefined && !this.attachments.all().includes(stale)) this.attachments.add(stale);
      await this.forgetPending(target.name);
      throw err;
    }
  }

  /** An attach that failed after its port was listed: the port goes again, and port security is told. */
  private async forgetPending(name: string): Promise<void> {
    if (this.pendingPort === null) return;
    this.pendingPort = null;
    await this.listeners.portsChanging(name);
  }

  /** The port of the attach under way, if any, with its MAC already chosen. */
  pending(): GuardedPort | null {
    return this.pendingPort;
  }

  /** Adds the addresses of `wanted` that `record` lacks; on a failure, those added in this call go again. */
  async addAddresses(record: Attachment, wanted: AttachCidr[]): Promise<AttachedContainer> {
    const fresh = wanted.filter((w) => !record.addresses.includes(w.cidr));
    if (fresh.length === 0) return publicView(record);
    const undo: UndoStep[] = [];
    try {
      if (fresh.some((w) => w.family === 6) && !hasV6(record.addresses)) await this.links.enableIpv6(record.netnsPath);
      for (const w of fresh) {
        const r = await this.links.addAddress(record.netnsPath, w.cidr, true);
        if (r.code !== 0) {
          if (/File exists/i.test(r.stderr)) {
            throw RouterError.config(`${describe(record)} already has ${w.cidr} on ${CONTAINER_IFNAME}, put there by something other than weave`);
          }
          throw new RouterError('io', `cannot add ${w.cidr} to ${describe(record)}: ${r.stderr.trim()}`);
        }
        undo.push(() => this.links.removeAddress(record.netnsPath, w.cidr));
      }
      await this.links.ensureRoutes(record.netnsPath, hasV6([...record.addresses, ...fresh.map((w) => w.cidr)]));
    } catch (err) {
      await this.rollback(undo, err);
      throw err;
    }
    record.addresses.push(...fresh.map((w) => w.cidr));
    this.attachments.save();
    this.logger.info('added addresses', { container: record.name, addresses: fresh.map((w) => w.cidr).join(',') });
    await this.listeners.attached(publicView(record), fresh.map((w) => w.cidr));
    return publicView(record);
  }

  /** `weave attach --no-port-security` of a container attached with it on: it is let through from now on. */
  async unguard(record: Attachment): Promise<AttachedContainer> {
    record.portSecurity = false;
    this.attachments.save();
    this.logger.info('port security off for an attached container', { container: record.name, veth: record.hostIfname });
    await this.listeners.portsChanging(record.name);
    return publicView(record);
  }

  /** Removes the container's veth (if attached) and its record; returns its view without addresses. */
  async detach(record: Attachment): Promise<AttachedContainer> {
    if (record.state === 'attached') await this.links.remove(record.hostIfname);
    this.attachments.forget(record);
    this.attachments.save();
    this.logger.info('detached container', { container: record.name, veth: record.hostIfname });
    await this.listeners.detached(publicView(record), record.addresses, 'detach');
    return { ...publicView(record), addresses: [] };
  }

  /**
   * Takes `removing` off ethwe, leaving `remaining` (not empty), and puts the
   * overlay routes back that a subnet's last address took along.
   */
  async removeAddresses(record: Attachment, removing: string[], remaining: string[]): Promise<AttachedContainer> {
    for (const c of removing) {
      const r = await this.links.removeAddress(record.netnsPath, c);
      if (r.code !== 0 && !/Cannot assign requested address|not found/i.test(r.stderr)) {
        // Keep the record truthful about what is still there.
        record.addresses = record.addresses.filter((a) => !removing.slice(0, removing.indexOf(c)).includes(a));
        this.attachments.save();
        throw new RouterError('io', `cannot remove ${c} from ${describe(record)}: ${r.stderr.trim()}`);
      }
    }
    record.addresses = remaining;
    // The last IPv6 address gone: take away the IPv6 overlay routes attach added for it.
    if (hasV6(removing) && !hasV6(remaining)) await this.links.removeV6Routes(record.netnsPath);
    // Removing the last address of a subnet takes its connected route along; put the overlay routes back.
    await this.links.ensureRoutes(record.netnsPath, hasV6(remaining)).catch((err: unknown) =>
      this.logger.warn('cannot restore overlay routes after removing addresses', { container: record.name, error: errorMessage(err) }));
    this.attachments.save();
    this.logger.info('removed addresses', { container: record.name, addresses: removing.join(',') });
    await this.listeners.detached(publicView(record), removing, 'detach');
    return publicView(record);
  }

  private async rollback(undo: UndoStep[], cause: unknown): Promise<void> {
    for (const step of undo.reverse()) {
      try {
        await step();
      } catch (err) {
        this.logger.error('rollback step failed; something may be left behind', { error: errorMessage(err), cause: errorMessage(cause) });
      }
    }
  }
}
