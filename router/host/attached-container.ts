// What the rest of the daemon sees of an attached container, and how it hears
// of changes: the public view (AttachedContainer), the per-attachment DNS
// wishes (AttachOptions), and the listener hooks IPAM and DNS plug into, with
// the fan-out that calls them.
//
// The seam by which container lifecycle reaches ipam/ and dns/ the other way
// round (docs/architecture.md): cli/ wires them as listeners; nothing here may
// import them. A failing listener is logged and never undoes or blocks the
// attach or detach that it was told about.

import type { Logger } from '../../common/logger';
import { RouterError } from '../mesh/errors';
import { errorMessage } from '../../common/errors';
import type { AttachSteps } from './attach-steps';
import type { ContainerKind } from './container-ref';
import type { JoinedVia } from './docker-attach-spec';

export interface AttachedContainer {
  /** Docker: full container id. netns: `netns:NAME`. pid: `pid:PID`. cni: `cni:ID/IFNAME`, the runtime's container id. */
  id: string;
  /** Docker: the container's name. netns: the namespace name. pid: the process name. cni: its DNS name, else the CNI network's. */
  name: string;
  /** 'cni': attached by the CNI plugin for a runtime (podman, containerd), which owns it: listed, never detached by weave. */
  kind: ContainerKind | 'cni';
  /** container-link.ts's CONTAINER_IFNAME (ethwe), but for CNI, whose runtime names it (eth0 mostly). */
  ifname: string;
  mac: string;
  /** CIDRs on ethwe, in the order they were attached. */
  addresses: string[];
  /** Host end of the veth pair, on the bridge. */
  hostIfname: string;
  /** The process whose namespace we entered; null for netns:NAME. */
  pid: number | null;
  /** How it joined: weave attach, the weave.attach label, WEAVE_CIDR, the Docker network plugin or CNI (absent: weave attach). */
  joined?: JoinedVia;
  /** `weave attach --name`: the name DNS registers instead of `name` (dns/ reads it through the listener). */
  dnsName?: string;
  /** `weave attach --without-dns`: no DNS name, resolver left alone. */
  withoutDns?: boolean;
  /** `weave attach --no-port-security`: it may send as any MAC or address (router/host/port-security.ts). Absent: guarded. */
  portSecurity?: false;
}

/** Per-attachment wishes (DNS, port security), kept in the record so restarts and re-attaches honour them. */
export interface AttachOptions {
  dnsName?: string;
  withoutDns?: boolean;
  portSecurity?: false;
}

/** Checks AttachOptions from a request; the name itself is checked by DNS, this only bounds it. */
export function validateAttachOptions(opts: AttachOptions): AttachOptions {
  const out: AttachOptions = {};
  if (opts.dnsName !== undefined) {
    if (typeof opts.dnsName !== 'string' || opts.dnsName.trim() === '' || opts.dnsName.length > 253 || /[\u0000-\u0020\u007f]/.test(opts.dnsName)) {
      throw RouterError.config(`--name must be a host name of at most 253 characters, got ${JSON.stringify(opts.dnsName)}`);
    }
    out.dnsName = opts.dnsName.trim();
  }
  if (opts.withoutDns !== undefined) {
    if (typeof opts.withoutDns !== 'boolean') throw RouterError.config(`withoutDns must be true or false, got ${JSON.stringify(opts.withoutDns)}`);
    if (opts.withoutDns) out.withoutDns = true;
  }
  if (out.dnsName !== undefined && out.withoutDns === true) throw RouterError.config('--name and --without-dns contradict each other');
  if (opts.portSecurity !== undefined) {
    if (typeof opts.portSecurity !== 'boolean') throw RouterError.config(`portSecurity must be true or false, got ${JSON.stringify(opts.portSecurity)}`);
    if (!opts.portSecurity) out.portSecurity = false;
  }
  return out;
}

/** Only the wishes actually set, so records and views carry no `undefined` fields. */
export function attachOptionsOf(a: AttachOptions): AttachOptions {
  return {
    ...(a.dnsName !== undefined ? { dnsName: a.dnsName } : {}), ...(a.withoutDns === true ? { withoutDns: true } : {}),
    ...(a.portSecurity === false ? { portSecurity: false } : {}),
  };
}

export type DetachReason = 'detach' | 'died' | 'destroyed' | 'gone';

/**
 * Containers attached by something other than the ContainerManager (the
 * Docker network plugin): listed by `weave ps` beside the manager's own.
 * Register with ContainerManager.addEndpointSource.
 */
export interface EndpointSource {
  list(): AttachedContainer[];
}

/** Hook point for IPAM and DNS: what was attached or detached, after the fact. */
export interface ContainerListener {
  /** `added` are the CIDRs new in this call (all of them for a fresh attach). */
  onAttached?(container: AttachedContainer, added: string[]): void | Promise<void>;
  /** `removed` are the CIDRs gone in this call; `reason` says why. */
  onDetached?(container: AttachedContainer, removed: string[], reason: DetachReason): void | Promise<void>;
  /**
   * The ports an attach is making changed before its end: a port about to
   * come up (its MAC and addresses chosen, listed by the manager's ports()),
   * or one that failed and is gone again. Port security learns it here, so
   * the container's first announcement is not dropped.
   */
  onPortsChanging?(): void | Promise<void>;
}

/** Calls every listener in turn, after the fact; one that throws is logged and the rest still run. */
export class ContainerListeners {
  private readonly listeners: ContainerListener[] = [];

  constructor(private readonly logger: Logger) {}

  /** Returns a function that removes `listener` again. */
  add(listener: ContainerListener): () => void {
    this.listeners.push(listener);
    return () => {
      const i = this.listeners.indexOf(listener);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  /** With `steps`, each listener's time is a step of its own (`listener1`, `listener2`, ... in the order added). */
  async attached(view: AttachedContainer, added: readonly string[], steps?: AttachSteps): Promise<void> {
    let i = 0;
    for (const l of [...this.listeners]) {
      i++;
      if (l.onAttached === undefined) continue;
      try {
        await l.onAttached(view, [...added]);
      } catch (err) {
        this.logger.error('container attach listener failed', { container: view.name, error: errorMessage(err) });
      }
      steps?.mark(`listener${i}`);
    }
  }

  async portsChanging(name: string): Promise<void> {
    for (const l of [...this.listeners]) {
      if (l.onPortsChanging === undefined) continue;
      try {
        await l.onPortsChanging();
      } catch (err) {
        this.logger.error('container port listener failed', { container: name, error: errorMessage(err) });
      }
    }
  }

  async detached(view: AttachedContainer, removed: readonly string[], reason: DetachReason): Promise<void> {
    for (const l of [...this.listeners]) {
      if (l.onDetached === undefined) continue;
      try {
        await l.onDetached(view, [...removed], reason);
      } catch (err) {
        this.logger.error('container detach listener failed', { container: view.name, error: errorMessage(err) });
      }
    }
  }
}
