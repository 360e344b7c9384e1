// Attaching containers to the weave bridge: the ContainerManager is the entry
// point (`weave attach/detach/ps`, restarts, Docker events, auto-attach). It
// owns deciding what each container should have: resolving references,
// getting addresses from the AddressSource (IPAM), refusing an address another
// container holds, and planning a detach (with dual-stack twins). The
// lifecycle (restore after a daemon restart, Docker events, the sweep of
// stopped and vanished containers) is decided in docker-lifecycle.ts and
// carried out by container-lifecycle.ts; docker-auto-attach.ts follows the
// engine. ContainerAttacher carries the changes out, ContainerLinks runs the
// commands, container-state.ts keeps the record.
//
// It must never remove anything it did not make (the veth, or the addresses it
// added), and never run two operations at once: attach, detach, restore and
// Docker events each run to completion before the next starts, so the record
// never changes across an await inside another operation.

import path from 'node:path';
import type { Clock, Timer } from '../../common/clock';
import { SystemClock } from '../../common/clock';
import type { Logger } from '../../common/logger';
import { RouterError } from '../mesh/errors';
import { assertNever, errorMessage } from '../../common/errors';
import type { AttachCidr } from './attach-address';
import { ipOf, parseAttachAddress, parseAttachAddresses, parseDetachCidr } from './attach-address';
import type { AttachedContainer, AttachOptions, ContainerListener, EndpointSource } from './attached-container';
import { ContainerListeners, validateAttachOptions } from './attached-container';
import { AttachSteps } from './attach-steps';
import { ContainerAttacher } from './container-attacher';
import { ContainerLinks, randomMac } from './container-link';
import type { ContainerRef, HostFs, ResolvedContainer } from './container-ref';
import { nativeNetlink } from './netlink-socket';
import { formatContainerRef, parseContainerRef, procHostFs, resolveContainer } from './container-ref';
import type { Attachment } from './container-state';
import { AttachmentRecord, FileStateStore, STATE_FILE, addressesToDetach, describeAttachment as describe, publicView } from './container-state';
import type { DockerApi } from './docker-client';
import type { AddressSource, ContainerDeps, ContainerOptions, DetachResult, WatchOptions } from './container-options';
import type { JoinedVia } from './docker-attach-spec';
import type { DockerWatchStatus } from './docker-auto-attach';
import { DockerWatcher } from './docker-auto-attach';
import type { EventDecision, LifecycleRecord } from './docker-lifecycle';
import type { LifecycleParts } from './container-lifecycle';
import { applyDockerEvent, restoreRecord, sweepRecords } from './container-lifecycle';
import type { GuardedPort } from './port-security-rules';

/** IPAM's default release grace: a stopped container keeps its addresses this long. */
const DEFAULT_GRACE_MS = 60_000;
/** How often vanished `netns:`/`pid:` namespaces and expired stopped containers are looked for: one stat per attachment. */
const DEFAULT_SWEEP_MS = 2_000;

export class ContainerManager {
  private addressSource: AddressSource | null = null;
  private readonly attachments: AttachmentRecord;
  private readonly listeners: ContainerListeners;
  private readonly links: ContainerLinks;
  private readonly attacher: ContainerAttacher;
  private readonly docker: DockerApi | null;
  private readonly logger: Logger;
  private readonly hostFs: HostFs;
  private readonly hostNetns: string;
  private queue: Promise<unknown> = Promise.resolve();
  private watcher: DockerWatcher | null = null;
  private sweepTimer: Timer | null = null;
  private readonly clock: Clock;
  private readonly sweepMs: number;
  private readonly parts: LifecycleParts;
  private readonly endpointSources: EndpointSource[] = [];

  constructor(deps: ContainerDeps, opts: ContainerOptions) {
    this.docker = deps.docker ?? null;
    this.logger = deps.logger;
    this.hostFs = deps.hostFs ?? procHostFs;
    this.attachments = new AttachmentRecord(deps.store ?? new FileStateStore(path.join(opts.datadir, STATE_FILE)), deps.logger);
    this.listeners = new ContainerListeners(deps.logger);
    this.links = new ContainerLinks(
      {
        runner: deps.runner,
        netlink: deps.netlink ?? nativeNetlink,
        logger: deps.logger,
        newMac: deps.newMac ?? randomMac,
        sleep: deps.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms))),
      },
      { bridge: opts.bridge, mtu: opts.mtu, overlayRoutes: opts.overlayRoutes, ...(opts.hostNetns !== undefined ? { hostNetns: opts.hostNetns } : {}) },
    );
    this.attacher = new ContainerAttacher(this.links, this.attachments, this.listeners, deps.logger);
    this.hostNetns = opts.hostNetns ?? '/proc/self/ns/net';
    this.clock = deps.clock ?? new SystemClock();
    this.sweepMs = opts.sweepMs ?? DEFAULT_SWEEP_MS;
    this.parts = {
      attachments: this.attachments, links: this.links, attacher: this.attacher, listeners: this.listeners, logger: this.logger,
      docker: this.docker, clock: this.clock, graceMs: opts.graceMs ?? DEFAULT_GRACE_MS,
      resolve: (ref) => this.resolve(ref),
      namespaceIdIfReadable: (p) => this.namespaceIdIfReadable(p),
      stillThere: (a) => this.stillThere(a),
    };
  }

  /** Registers IPAM/DNS-style hooks; returns a function that removes them. */
  addListener(listener: ContainerListener): () => void {
    return this.listeners.add(listener);
  }

  /**
   * Containers attached by something else (the Docker network plugin), for
   * `weave ps`; returns a function that removes the source again.
   */
  addEndpointSource(source: EndpointSource): () => void {
    this.endpointSources.push(source);
    return () => {
      const i = this.endpointSources.indexOf(source);
      if (i >= 0) this.endpointSources.splice(i, 1);
    };
  }

  /** Attached containers, for `weave ps` (stopped Docker containers are not listed). */
  list(): AttachedContainer[] {
    return this.attachments.all().filter((a) => a.state === 'attached').map((a) => publicView(a));
  }

  /** Ports for port security: every attached container's, and the port of an attach under way (its MAC chosen, not yet announced). */
  ports(): GuardedPort[] {
    const pending = this.attacher.pending();
    return [...this.list(), ...(pending === null ? [] : [pending])];
  }

  /** list() and the endpoint sources' containers: everything attached on this host. */
  listAll(): AttachedContainer[] {
    const out = this.list();
    for (const s of this.endpointSources) {
      try {
        out.push(...s.list());
      } catch (err) {
        this.logger.warn('an endpoint source cannot list its containers', { error: errorMessage(err) });
      }
    }
    return out;
  }

  /** Docker: whether the engine is reachable, whether auto-attach is on, what it could not attach. */
  dockerStatus(): DockerWatchStatus | null {
    return this.watcher?.status() ?? null;
  }

  /** Every address this manager holds, including those of stopped containers. */
  addressesInUse(): string[] {
    return this.attachments.all().flatMap((a) => a.addresses);
  }

  /**
   * Attaches `ref` with `cidrs`, or adds `cidrs` to it when it is attached
   * already. Validates everything before changing anything, and on a failure
   * midway undoes what this call made.
   */
  async attach(ref: string | ContainerRef, cidrs: string[], opts: AttachOptions = {}, via: JoinedVia = 'manual'): Promise<AttachedContainer> {
    const steps = new AttachSteps();
    const view = await this.attachTimed(ref, cidrs, opts, via, steps);
    if (this.logger.enabled('debug')) this.logger.debug('attach steps', { container: view.name, ...steps.fields() });
    return view;
  }

  private async attachTimed(ref: string | ContainerRef, cidrs: string[], opts: AttachOptions, via: JoinedVia, steps: AttachSteps): Promise<AttachedContainer> {
    const parsed = typeof ref === 'string' ? parseContainerRef(ref) : ref;
    const dns = validateAttachOptions(opts);
    const source = this.addressSource;
    if (source === null) {
      const wanted = parseAttachAddresses(cidrs, true);
      return this.serialize(() => this.handleAttach(parsed, wanted, dns, via, steps));
    }
    if (!Array.isArray(cidrs) || cidrs.some((c) => typeof c !== 'string')) throw RouterError.config('addresses must be a list of strings');
    // Resolve first (outside the queue: allocation may wait for IPAM consensus),
    // so addresses are keyed on the container's stable id.
    const target = await this.resolve(parsed);
    steps.mark('resolve');
    const addresses = await source.obtain({ id: target.id, name: target.name }, cidrs);
    steps.mark('ipam');
    let wanted: AttachCidr[];
    try {
      wanted = parseAttachAddresses(addresses, true);
      return await this.serialize(() => this.handleAttach(parsed, wanted, dns, via, steps));
    } catch (err) {
      // Hand back what the source gave us for this failed attach; the container keeps any older addresses.
      const held = new Set(this.attachments.all().filter((a) => a.id === target.id).flatMap((a) => a.addresses));
      source.giveBack({ id: target.id, name: target.name }, addresses.filter((a) => !held.has(a)));
      throw err;
    }
  }

  /** The source's twins of `cidr`, canonical; none when it has no opinion or fails. */
  private twinsOf(cidr: string): string[] {
    const fn = this.addressSource?.twinsOf;
    if (fn === undefined) return [];
    try {
      return fn.call(this.addressSource, cidr).map((c) => parseAttachAddress(c).cidr);
    } catch (err) {
      this.logger.warn('cannot tell the twins of an address', { address: cidr, error: errorMessage(err) });
      return [];
    }
  }

  /** Where addresses come from when an attach names none, or names subnets (IPAM). */
  setAddressSource(source: AddressSource): void {
    this.addressSource = source;
  }

  /** Removes `cidrs` from the container, or everything (the veth) when none are given or none remain. */
  async detach(ref: string | ContainerRef, cidrs?: string[]): Promise<DetachResult> {
    const parsed = typeof ref === 'string' ? parseContainerRef(ref) : ref;
    const wanted = cidrs === undefined || cidrs.length === 0 ? null : parseAttachAddresses(cidrs, false, parseDetachCidr);
    return this.serialize(() => this.handleDetach(parsed, wanted));
  }

  /**
   * Reads the record a previous daemon left and keeps what is still true:
   * entries whose namespace is gone, or whose veth is gone, are dropped (a
   * leftover veth of ours is deleted); Docker containers restarted meanwhile
   * are attached again with their addresses.
   */
  restore(): Promise<AttachedContainer[]> {
    return this.serialize(async () => {
      await restoreRecord(this.parts);
      return this.list();
    });
  }

  /**
   * Follows Docker events (a restarted container is attached again, a dead
   * one keeps its addresses for the grace period, a removed one is
   * forgotten; with `autoAttach`, labelled containers are attached), and
   * sweeps every few seconds for vanished namespaces and expired stopped
   * containers.
   */
  watch(opts: WatchOptions = {}): void {
    if (this.sweepTimer === null) this.scheduleSweep();
    if (this.docker === null || this.watcher !== null) return;
    this.watcher = new DockerWatcher(this.docker, {
      recordOf: (id) => this.recordOf(id),
      attachedElsewhere: (id) => this.listAll().some((c) => c.id === id && c.joined === 'plugin'),
      attach: (ref, cidrs, o, via) => this.attach(ref, cidrs, o, via),
      apply: (id, d) => this.serialize(() => this.applyDecision(id, d)),
    }, this.logger, this.clock, opts.autoAttach === true);
    this.watcher.start();
  }

  /** The sweep, once, in the queue (the timer calls it; tests call it directly). */
  sweep(): Promise<void> {
    return this.serialize(() => sweepRecords(this.parts));
  }

  /** Stops following Docker events and the sweep, and waits for queued work. Attachments stay as they are. */
  async close(): Promise<void> {
    this.sweepTimer?.cancel();
    this.sweepTimer = null;
    await this.watcher?.close();
    this.watcher = null;
    await this.idle();
  }

  /** Resolves once the Docker events seen so far and every queued operation are done. */
  async idle(): Promise<void> {
    await this.watcher?.idle();
    await this.queue.catch(() => undefined);
  }

  // -------------------------------------------------------------------------

  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private scheduleSweep(): void {
    this.sweepTimer = this.clock.setTimer(this.sweepMs, () => {
      this.sweep().catch((err: unknown) => this.logger.warn('container sweep failed', { error: errorMessage(err) }))
        .finally(() => { if (this.sweepTimer !== null) this.scheduleSweep(); });
    });
  }

  private recordOf(id: string): LifecycleRecord | null {
    return this.attachments.all().find((a) => a.kind === 'docker' && a.id === id) ?? null;
  }

  private async applyDecision(id: string, d: Extract<EventDecision, { do: 'reattach' | 'stop' | 'forget' }>): Promise<void> {
    const record = this.attachments.all().find((a) => a.kind === 'docker' && a.id === id);
    // Gone meanwhile (a detach, a sweep): nothing left to do.
    if (record === undefined) return;
    await applyDockerEvent(this.parts, record, d.do);
  }

  private async handleAttach(ref: ContainerRef, wanted: AttachCidr[], dns: AttachOptions, via: JoinedVia, steps: AttachSteps): Promise<AttachedContainer> {
    steps.mark('queue');
    const view = await this.attachOrAdd(ref, wanted, dns, steps);
    // How it joined is set once, by the attach that made it.
    const record = this.attachments.all().find((a) => a.id === view.id && a.state === 'attached');
    if (record !== undefined && record.via === undefined && via !== 'manual') {
      record.via = via;
      this.attachments.save();
      return publicView(record);
    }
    return view;
  }

  private async attachOrAdd(ref: ContainerRef, wanted: AttachCidr[], dns: AttachOptions, steps: AttachSteps): Promise<AttachedContainer> {
    const target = await this.resolve(ref);
    steps.mark('resolve');
    let existing = this.attachments.all().find((a) => a.state === 'attached' && a.nsId === target.nsId) ?? null;
    if (existing !== null && !(await this.stillThere(existing))) {
      // The veth vanished behind our back (someone deleted it): start afresh.
      this.logger.info('attachment was gone; attaching again', { container: existing.name, veth: existing.hostIfname });
      this.attachments.forget(existing);
      await this.listeners.detached(publicView(existing), existing.addresses, 'gone');
      existing = null;
    }
    // A stopped record of the same Docker container: its addresses are its own.
    const self = (a: Attachment): boolean => a === existing || (a.kind === 'docker' && a.id === target.id);
    for (const w of wanted) {
      const holder = this.attachments.all().find((a) => !self(a) && a.addresses.some((c) => ipOf(c) === w.address));
      if (holder !== undefined) {
        throw RouterError.config(`address ${w.address} is already attached to ${describe(holder)}`);
      }
      const mine = existing?.addresses.find((c) => ipOf(c) === w.address);
      if (mine !== undefined && mine !== w.cidr) {
        throw RouterError.config(`${describe(existing as Attachment)} already has ${mine}; detach it before attaching ${w.cidr}`);
      }
    }
    if (existing !== null) {
      const view = await this.attacher.addAddresses(existing, wanted);
      return dns.portSecurity === false && existing.portSecurity !== false ? this.attacher.unguard(existing) : view;
    }
    return this.attacher.create(target, wanted, dns, steps);
  }

  private async handleDetach(ref: ContainerRef, wanted: AttachCidr[] | null): Promise<DetachResult> {
    const record = await this.find(ref);
    if (record === null) throw RouterError.config(`${formatContainerRef(ref)} is not attached`);
    const removing = wanted === null ? [...record.addresses] : addressesToDetach(record, wanted, (c) => this.twinsOf(c));
    const remaining = record.addresses.filter((c) => !removing.includes(c));
    if (remaining.length === 0 || record.state === 'stopped') {
      return { container: await this.attacher.detach(record), removed: [...record.addresses], detached: true };
    }
    return { container: await this.attacher.removeAddresses(record, removing, remaining), removed: removing, detached: false };
  }

  private resolve(ref: ContainerRef): Promise<ResolvedContainer> {
    return resolveContainer(ref, { docker: this.docker, hostFs: this.hostFs, hostNetns: this.hostNetns });
  }

  /** The record for `ref`, by what the user typed first, else by the namespace it resolves to. */
  private async find(ref: ContainerRef): Promise<Attachment | null> {
    const direct = this.attachments.all().find((a) => {
      switch (ref.kind) {
        case 'docker':
          return a.kind === 'docker' && (a.name === ref.ref || (ref.ref.length >= 12 && a.id.startsWith(ref.ref)));
        case 'netns':
          return a.kind === 'netns' && a.id === `netns:${ref.name}`;
        case 'pid':
          return a.state === 'attached' && a.pid === ref.pid;
        default:
          return assertNever(ref);
      }
    });
    if (direct !== undefined) return direct;
    try {
      const target = await this.resolve(ref);
      return this.attachments.all().find((a) => (a.state === 'attached' && a.nsId === target.nsId) || (a.kind === 'docker' && a.id === target.id)) ?? null;
    } catch {
      return null;
    }
  }

  private async stillThere(a: Attachment): Promise<boolean> {
    return this.namespaceIdIfReadable(a.netnsPath) === a.nsId && (await this.links.exists(a.hostIfname)) === true;
  }

  /**
   * For attachments we already hold, a namespace we may no longer read counts
   * as gone, as one that vanished does: only a new attach reports "permission
   * denied", so one unreadable entry never stops a restore or a sweep.
   */
  private namespaceIdIfReadable(nsPath: string): string | null {
    try {
      return this.hostFs.namespaceId(nsPath);
    } catch {
      return null;
    }
  }
}
