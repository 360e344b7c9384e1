// Carrying out the lifecycle decisions of docker-lifecycle.ts on the record
// of attachments: restoring what a previous daemon left (keep what is still
// true, attach again Docker containers restarted meanwhile, drop and release
// what vanished), applying a Docker event to a container we hold (attach its
// new namespace after a restart, keep its addresses while it is stopped,
// forget it when removed), and the periodic sweep (stopped containers past
// their grace period, `netns:`/`pid:` namespaces that vanished).
//
// The ContainerManager calls these inside its queue, so the record never
// changes under them across an await. Everything that leaves the record is
// told to the listeners (IPAM frees, DNS unregisters), so nothing leaks.

import type { Clock } from '../../common/clock';
import type { Logger } from '../../common/logger';
import { errorMessage } from '../../common/errors';
import { parseAttachAddress } from './attach-address';
import type { ContainerListeners, DetachReason } from './attached-container';
import { attachOptionsOf } from './attached-container';
import type { ContainerAttacher } from './container-attacher';
import type { ContainerLinks } from './container-link';
import type { ContainerRef, ResolvedContainer } from './container-ref';
import type { Attachment, AttachmentRecord } from './container-state';
import { publicView } from './container-state';
import type { DockerApi } from './docker-client';
import { decideSweep } from './docker-lifecycle';

/** The parts of the ContainerManager these steps work with. */
export interface LifecycleParts {
  attachments: AttachmentRecord;
  links: ContainerLinks;
  attacher: ContainerAttacher;
  listeners: ContainerListeners;
  logger: Logger;
  docker: DockerApi | null;
  clock: Clock;
  /** How long a stopped Docker container keeps its addresses (IPAM's release grace). */
  graceMs: number;
  resolve(ref: ContainerRef): Promise<ResolvedContainer>;
  namespaceIdIfReadable(nsPath: string): string | null;
  stillThere(a: Attachment): Promise<boolean>;
}

/** Takes `record` out and tells the listeners why; the veth goes too when it is still there. */
async function drop(p: LifecycleParts, record: Attachment, reason: DetachReason, removeVeth: boolean): Promise<void> {
  if (removeVeth) await p.links.remove(record.hostIfname);
  p.attachments.forget(record);
  p.attachments.save();
  await p.listeners.detached(publicView(record), record.addresses, reason);
}

/** Attaches the Docker container of `record` again in its current namespace, with its addresses, keeping how it joined. */
async function reattach(p: LifecycleParts, record: Attachment): Promise<void> {
  const target = await p.resolve({ kind: 'docker', ref: record.id });
  await p.attacher.create(target, record.addresses.map((c) => parseAttachAddress(c)), attachOptionsOf(record));
  const fresh = p.attachments.all().find((a) => a.kind === 'docker' && a.id === record.id);
  if (fresh !== undefined && record.via !== undefined) {
    fresh.via = record.via;
    p.attachments.save();
  }
}

/**
 * Reads the record a previous daemon left and keeps what is still true:
 * entries whose namespace or veth is gone are dropped and their addresses
 * released (a leftover veth of ours is deleted); Docker containers restarted
 * meanwhile are attached again with their addresses.
 */
export async function restoreRecord(p: LifecycleParts): Promise<void> {
  const saved = p.attachments.loadSaved();
  if (saved === null) return;
  let changed = false;
  for (const e of saved) {
    if (p.attachments.all().some((a) => a.hostIfname === e.hostIfname || a.nsId === e.nsId)) continue;
    if (e.state === 'stopped') {
      // From before stop times were kept: the grace period starts now.
      p.attachments.add(e.stoppedAtMs === undefined ? { ...e, stoppedAtMs: p.clock.now() } : e);
      changed ||= e.stoppedAtMs === undefined;
      continue;
    }
    const nsNow = p.namespaceIdIfReadable(e.netnsPath);
    const vethNow = await p.links.exists(e.hostIfname);
    if (nsNow === e.nsId && vethNow === true) {
      p.attachments.add(e);
      continue;
    }
    changed = true;
    if (vethNow === true) await p.links.remove(e.hostIfname);
    if (e.kind === 'docker' && p.docker !== null) {
      const info = await p.docker.inspect(e.id).catch(() => null);
      if (info !== null) {
        if (!info.running) {
          p.attachments.add({ ...e, state: 'stopped', pid: null, stoppedAtMs: p.clock.now() });
          continue;
        }
        // Restarted while we were away: attach again with the same addresses.
        try {
          p.attachments.add({ ...e, state: 'stopped' });
          await reattach(p, e);
          continue;
        } catch (err) {
          p.logger.warn('cannot re-attach restarted container', { container: e.name, error: errorMessage(err) });
          const left = p.attachments.all().find((a) => a.kind === 'docker' && a.id === e.id);
          if (left !== undefined) p.attachments.forget(left);
        }
      }
    }
    p.logger.info('dropping attachment whose container is gone', { container: e.name, veth: e.hostIfname });
    // Its addresses were held for it in IPAM and its name in DNS: free them.
    await p.listeners.detached(publicView(e), e.addresses, 'gone');
  }
  if (changed) p.attachments.save();
}

/** A Docker event for a container we hold: `reattach` on start, `stop` on die, `forget` on destroy. */
export async function applyDockerEvent(p: LifecycleParts, record: Attachment, what: 'reattach' | 'stop' | 'forget'): Promise<void> {
  switch (what) {
    case 'reattach': {
      if (record.state === 'attached') {
        if (await p.stillThere(record)) return;
        // Restarted without a die we saw: the old namespace is gone.
        await p.links.remove(record.hostIfname);
        record.state = 'stopped';
        await p.listeners.detached(publicView(record), record.addresses, 'died');
      }
      await reattach(p, record);
      return;
    }
    case 'stop': {
      // The namespace died with the container, and the veth with it; make sure.
      await p.links.remove(record.hostIfname);
      record.state = 'stopped';
      record.pid = null;
      record.stoppedAtMs = p.clock.now();
      p.attachments.save();
      p.logger.info('container died; keeping its addresses for a restart', { container: record.name, graceMs: p.graceMs });
      await p.listeners.detached(publicView(record), record.addresses, 'died');
      return;
    }
    case 'forget': {
      await drop(p, record, 'destroyed', record.state === 'attached');
      p.logger.info('container destroyed; released its addresses', { container: record.name });
      return;
    }
  }
}

/**
 * One sweep: Docker containers whose process is gone are stopped (a death
 * whose event we missed), stopped ones past the grace period are forgotten
 * (their addresses released), and attachments whose `netns:`/`pid:`
 * namespace vanished are dropped with their veth and their name.
 */
export async function sweepRecords(p: LifecycleParts): Promise<void> {
  const now = p.clock.now();
  for (const a of [...p.attachments.all()]) {
    const ns = a.state === 'attached' ? p.namespaceIdIfReadable(a.netnsPath) : null;
    const decision = decideSweep(a, ns, now, p.graceMs);
    if (decision === 'keep') continue;
    if (decision === 'died') {
      await applyDockerEvent(p, a, 'stop');
    } else if (decision === 'expired') {
      p.logger.info('stopped container not restarted within the grace period; released its addresses', { container: a.name });
      await drop(p, a, 'destroyed', false);
    } else {
      p.logger.info('namespace is gone; detached it', { container: a.name, veth: a.hostIfname });
      await drop(p, a, 'gone', (await p.links.exists(a.hostIfname)) === true);
    }
  }
}
