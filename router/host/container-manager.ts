// Attaching containers to the weave bridge: the ContainerManager is the entry
// point (`weave attach/detach/ps`, restarts, Docker events). It owns deciding
// what each container should have: resolving references, getting addresses
// from the AddressSource (IPAM), refusing an address another container holds,
// planning a detach (with dual-stack twins), re-checking the record a previous
// daemon left, and following Docker events so a restarted container is
// attached again and a destroyed one forgotten. ContainerAttacher carries the
// changes out, ContainerLinks runs the commands, container-state.ts keeps the
// record.
//
// It must never remove anything it did not make (the veth, or the addresses it
// added), and never run two operations at once: attach, detach, restore and
// Docker events each run to completion before the next starts, so the record
// never changes across an await inside another operation.

import path from 'node:path';
import type { Logger } from '../../common/logger';
import { RouterError } from '../mesh/errors';
import { assertNever, errorMessage } from '../../common/errors';
import type { AttachCidr } from './attach-address';
import { ipOf, parseAttachAddress, parseAttachAddresses, parseDetachCidr } from './attach-address';
import type { AttachedContainer, AttachOptions, ContainerListener } from './attached-container';
import { ContainerListeners, attachOptionsOf, validateAttachOptions } from './attached-container';
import type { CommandRunner } from './command-runner';
import { ContainerAttacher } from './container-attacher';
import { ContainerLinks, randomMac } from './container-link';
import type { ContainerRef, HostFs, ResolvedContainer } from './container-ref';
import { formatContainerRef, parseContainerRef, procHostFs, resolveContainer } from './container-ref';
import type { Attachment, StateStore } from './container-state';
import { AttachmentRecord, FileStateStore, STATE_FILE, describeAttachment as describe, publicView } from './container-state';
import type { DockerApi, DockerEvent, EventWatch } from './docker-client';

export interface ContainerDeps {
  runner: CommandRunner;
  /** Null when Docker is not available: Docker references then get a clear error. */
  docker?: DockerApi | null;
  logger: Logger;
  /** Defaults to the real /proc and /var/run/netns. */
  hostFs?: HostFs;
  /** Defaults to <datadir>/containers.json. */
  store?: StateStore;
  /** A fresh MAC for ethwe; default: random, locally administered, unicast. */
  newMac?: () => string;
  /** Default setTimeout; tests pass one that returns at once. */
  sleep?: (ms: number) => Promise<void>;
}

export interface ContainerOptions {
  bridge: string;
  mtu: number;
  /** CIDRs routed via ethwe (e.g. the IPAM range 10.32.0.0/12); 224.0.0.0/4 is always added. */
  overlayRoutes: string[];
  datadir: string;
  /**
   * The namespace the bridge lives in, to refuse attaching the host to itself.
   * Default /proc/self/ns/net; tests that act as a host in another namespace pass its path.
   */
  hostNetns?: string;
}

/**
 * Turns attach arguments (CIDRs, `net:CIDR`, `ip:CIDR`, or nothing) into the
 * addresses to give a container; IPAM implements it. Keyed on the resolved
 * container id, so a restarted Docker container keeps its addresses.
 */
export interface AddressSource {
  obtain(container: { id: string; name: string }, requests: string[]): Promise<string[]>;
  /** Addresses obtained for an attach that then failed. */
  giveBack(container: { id: string; name: string }, addresses: string[]): void;
  /**
   * Addresses that come and go with `cidr` (dual stack: the IPv6 twin of an
   * IPv4 address): detaching `cidr` removes those the container has too, since
   * the source frees them as one.
   */
  twinsOf?(cidr: string): string[];
}

export interface DetachResult {
  container: AttachedContainer;
  /** CIDRs removed in this call. */
  removed: string[];
  /** True when the veth was deleted (nothing of ours is left in the container). */
  detached: boolean;
}

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
  private watch: EventWatch | null = null;

  constructor(deps: ContainerDeps, opts: ContainerOptions) {
    this.docker = deps.docker ?? null;
    this.logger = deps.logger;
    this.hostFs = deps.hostFs ?? procHostFs;
    this.attachments = new AttachmentRecord(deps.store ?? new FileStateStore(path.join(opts.datadir, STATE_FILE)), deps.logger);
    this.listeners = new ContainerListeners(deps.logger);
    this.links = new ContainerLinks(
      {
        runner: deps.runner,
        logger: deps.logger,
        newMac: deps.newMac ?? randomMac,
        sleep: deps.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms))),
      },
      { bridge: opts.bridge, mtu: opts.mtu, overlayRoutes: opts.overlayRoutes },
    );
    this.attacher = new ContainerAttacher(this.links, this.attachments, this.listeners, deps.logger);
    this.hostNetns = opts.hostNetns ?? '/proc/self/ns/net';
  }

  /** Registers IPAM/DNS-style hooks; returns a function that removes them. */
  addListener(listener: ContainerListener): () => void {
    return this.listeners.add(listener);
  }

  /** Attached containers, for `weave ps` (stopped Docker containers are not listed). */
  list(): AttachedContainer[] {
    return this.attachments.all().filter((a) => a.state === 'attached').map((a) => publicView(a));
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
  async attach(ref: string | ContainerRef, cidrs: string[], opts: AttachOptions = {}): Promise<AttachedContainer> {
    const parsed = typeof ref === 'string' ? parseContainerRef(ref) : ref;
    const dns = validateAttachOptions(opts);
    const source = this.addressSource;
    if (source === null) {
      const wanted = parseAttachAddresses(cidrs, true);
      return this.serialize(() => this.handleAttach(parsed, wanted, dns));
    }
    if (!Array.isArray(cidrs) || cidrs.some((c) => typeof c !== 'string')) throw RouterError.config('addresses must be a list of strings');
    // Resolve first (outside the queue: allocation may wait for IPAM consensus),
    // so addresses are keyed on the container's stable id.
    const target = await this.resolve(parsed);
    const addresses = await source.obtain({ id: target.id, name: target.name }, cidrs);
    let wanted: AttachCidr[];
    try {
      wanted = parseAttachAddresses(addresses, true);
      return await this.serialize(() => this.handleAttach(parsed, wanted, dns));
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
    return this.serialize(() => this.handleRestore());
  }

  /** Follows Docker events: re-attach on start after a restart, forget on destroy. */
  watchDocker(): void {
    if (this.docker === null || this.watch !== null) return;
    this.watch = this.docker.watchEvents((ev) => {
      void this.serialize(() => this.handleDockerEvent(ev)).catch((err: unknown) => {
        this.logger.warn('docker event not handled', { action: ev.action, container: ev.id.slice(0, 12), error: errorMessage(err) });
      });
    });
  }

  /** Stops following Docker events and waits for queued work. Attachments stay as they are. */
  async close(): Promise<void> {
    this.watch?.close();
    this.watch = null;
    await this.queue.catch(() => undefined);
  }

  // -------------------------------------------------------------------------

  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async handleAttach(ref: ContainerRef, wanted: AttachCidr[], dns: AttachOptions = {}): Promise<AttachedContainer> {
    const target = await this.resolve(ref);
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
    if (existing !== null) return this.attacher.addAddresses(existing, wanted);
    return this.attacher.create(target, wanted, dns);
  }

  private async handleDetach(ref: ContainerRef, wanted: AttachCidr[] | null): Promise<DetachResult> {
    const record = await this.find(ref);
    if (record === null) throw RouterError.config(`${formatContainerRef(ref)} is not attached`);
    let removing: string[];
    if (wanted === null) {
      removing = [...record.addresses];
    } else {
      removing = [];
      for (const w of wanted) {
        const have = record.addresses.find((c) => ipOf(c) === w.address);
        if (have === undefined) throw RouterError.config(`address ${w.address} is not attached to ${describe(record)}`);
        if (!removing.includes(have)) removing.push(have);
      }
      for (const c of [...removing]) {
        for (const twin of this.twinsOf(c)) {
          const have = record.addresses.find((a) => ipOf(a) === ipOf(twin));
          if (have !== undefined && !removing.includes(have)) removing.push(have);
        }
      }
    }
    const remaining = record.addresses.filter((c) => !removing.includes(c));
    if (remaining.length === 0 || record.state === 'stopped') {
      if (record.state === 'attached') await this.links.remove(record.hostIfname);
      this.attachments.forget(record);
      this.attachments.save();
      this.logger.info('detached container', { container: record.name, veth: record.hostIfname });
      const view = { ...publicView(record), addresses: [] };
      await this.listeners.detached(publicView(record), record.addresses, 'detach');
      return { container: view, removed: [...record.addresses], detached: true };
    }
    return { container: await this.attacher.removeAddresses(record, removing, remaining), removed: removing, detached: false };
  }

  private async handleRestore(): Promise<AttachedContainer[]> {
    const saved = this.attachments.loadSaved();
    if (saved === null) return [];
    let changed = false;
    for (const e of saved) {
      if (this.attachments.all().some((a) => a.hostIfname === e.hostIfname || a.nsId === e.nsId)) continue;
      if (e.state === 'stopped') {
        this.attachments.add(e);
        continue;
      }
      const nsNow = this.namespaceIdIfReadable(e.netnsPath);
      const vethNow = await this.links.exists(e.hostIfname);
      if (nsNow === e.nsId && vethNow === true) {
        this.attachments.add(e);
        continue;
      }
      changed = true;
      if (vethNow === true) await this.links.remove(e.hostIfname);
      if (e.kind === 'docker' && this.docker !== null) {
        // Restarted while we were away: attach again with the same addresses.
        const info = await this.docker.inspect(e.id).catch(() => null);
        if (info !== null) {
          if (info.running) {
            try {
              await this.attacher.create(await this.resolve({ kind: 'docker', ref: e.id }), e.addresses.map((c) => parseAttachAddress(c)), attachOptionsOf(e));
              continue;
            } catch (err) {
              this.logger.warn('cannot re-attach restarted container', { container: e.name, error: errorMessage(err) });
            }
          } else {
            this.attachments.add({ ...e, state: 'stopped' });
            continue;
          }
        }
      }
      this.logger.info('dropping attachment whose container is gone', { container: e.name, veth: e.hostIfname });
    }
    if (changed) this.attachments.save();
    return this.list();
  }

  private async handleDockerEvent(ev: DockerEvent): Promise<void> {
    const record = this.attachments.all().find((a) => a.kind === 'docker' && a.id === ev.id);
    if (record === undefined) return;
    switch (ev.action) {
      case 'die': {
        if (record.state === 'stopped') return;
        // The namespace died with the container, and the veth with it; make sure.
        await this.links.remove(record.hostIfname);
        record.state = 'stopped';
        record.pid = null;
        this.attachments.save();
        this.logger.info('container died; keeping its addresses for a restart', { container: record.name });
        await this.listeners.detached(publicView(record), record.addresses, 'died');
        return;
      }
      case 'start': {
        if (record.state === 'attached') {
          if (await this.stillThere(record)) return;
          await this.links.remove(record.hostIfname);
          record.state = 'stopped';
          await this.listeners.detached(publicView(record), record.addresses, 'died');
        }
        const target = await this.resolve({ kind: 'docker', ref: ev.id });
        await this.attacher.create(target, record.addresses.map((c) => parseAttachAddress(c)), attachOptionsOf(record));
        return;
      }
      case 'destroy': {
        if (record.state === 'attached') await this.links.remove(record.hostIfname);
        this.attachments.forget(record);
        this.attachments.save();
        this.logger.info('container destroyed; released its addresses', { container: record.name });
        await this.listeners.detached(publicView(record), record.addresses, 'destroyed');
        return;
      }
      default:
        assertNever(ev.action);
    }
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
