// The lifecycle decisions for attached containers, as pure functions of the
// record, what happened and the time: what a Docker event means for a
// container (attach it, attach it again after a restart, keep its addresses
// while it is stopped, forget it), and what a periodic sweep does with a
// record (a stopped container past its grace period is forgotten, a
// `netns:`/`pid:` namespace that vanished without `weave detach` loses its
// attachment at once). The ContainerManager carries the decisions out.
//
// Pure: no I/O, no clock of its own (callers pass `now`), so the unit tests
// drive every path with a ManualClock's time.

import type { AutoAttachRequest } from './docker-attach-spec';
import type { ContainerKind } from './container-ref';

export type DockerEventKind = 'start' | 'die' | 'destroy';

/** What the manager knows of a container, as far as the decisions need it. */
export interface LifecycleRecord {
  kind: ContainerKind;
  state: 'attached' | 'stopped';
  /** When a Docker container was seen to die (ms, the manager's clock); absent while it runs. */
  stoppedAtMs?: number;
}

export type EventDecision =
  /** Nothing to do (not ours, or already in the state the event implies). */
  | { do: 'nothing' }
  /** A first attach, as the container's label or WEAVE_CIDR asks. */
  | { do: 'attach'; via: 'label' | 'env'; addresses: string[] }
  /** Asked for but refused: report `error`, attach nothing. */
  | { do: 'report'; error: string }
  /** Started again (docker restart, docker start): attach the new namespace with the record's addresses. */
  | { do: 'reattach' }
  /** Died: the veth went with the namespace; keep the addresses for a restart within the grace period. */
  | { do: 'stop' }
  /** Removed: free everything at once. */
  | { do: 'forget' };

/**
 * What a Docker event means. `request` is what the container asks of
 * auto-attach (null when auto-attach is off or was not looked up); it
 * matters only for a container we hold no record of.
 */
export function decideDockerEvent(record: LifecycleRecord | null, event: DockerEventKind, request: AutoAttachRequest | null): EventDecision {
  if (record === null) {
    if (event !== 'start' || request === null) return { do: 'nothing' };
    switch (request.kind) {
      case 'none':
        return { do: 'nothing' };
      case 'attach':
        return { do: 'attach', via: request.via, addresses: request.addresses };
      case 'refused':
        return { do: 'report', error: request.error };
    }
  }
  switch (event) {
    case 'start':
      // An attached record may be stale (a restart whose die we missed): the manager checks the namespace.
      return { do: 'reattach' };
    case 'die':
      return record.state === 'stopped' ? { do: 'nothing' } : { do: 'stop' };
    case 'destroy':
      return { do: 'forget' };
  }
}

/** Whether a start event needs the container inspected (to read its label): only when we hold no record of it. */
export function needsInspect(record: LifecycleRecord | null, event: DockerEventKind, autoAttach: boolean): boolean {
  return autoAttach && record === null && event === 'start';
}

export type SweepDecision = 'keep' | 'expired' | 'gone' | 'died';

/**
 * A periodic look at one record. `nsIdNow` is the dev:inode its namespace
 * path names now (null: nothing there, or not readable), `nsId` the one it
 * was attached in. A Docker container whose process is gone died without an
 * event we saw (the engine was away): it is stopped as a `die` would, and a
 * stopped one is forgotten once `graceMs` has passed (IPAM frees the
 * addresses on the same schedule, so the record must not keep claiming them).
 */
export function decideSweep(record: LifecycleRecord & { nsId: string }, nsIdNow: string | null, nowMs: number, graceMs: number): SweepDecision {
  if (record.state === 'stopped') {
    return record.stoppedAtMs !== undefined && nowMs - record.stoppedAtMs >= graceMs ? 'expired' : 'keep';
  }
  if (nsIdNow === record.nsId) return 'keep';
  return record.kind === 'docker' ? 'died' : 'gone';
}
