// Following the Docker engine: its events (start, die, destroy) and whether
// it is reachable at all. A container we hold is handed to the manager's
// lifecycle (attach again after a restart, keep its addresses while stopped,
// forget it when removed); with auto-attach on, a container we do not hold is
// inspected on `start`, and attached when its label `weave.attach` or its
// WEAVE_CIDR asks (docker-attach-spec.ts). When the engine (re)appears, the
// running containers are looked at once, so containers started while the
// router or the engine was away are attached too.
//
// It must never crash the daemon or stop following events: every failure
// (engine missing, permission denied, a container that exited between its
// event and our attach, an address already taken, a label we cannot read)
// becomes a problem in status and one line in the log, with what to do.
// Events of one container are handled in order; different containers do not
// wait for each other (an attach may wait for IPAM).

import type { Clock } from '../../common/clock';
import type { Logger } from '../../common/logger';
import { errorMessage } from '../../common/errors';
import type { AttachedContainer, AttachOptions } from './attached-container';
import type { ContainerRef } from './container-ref';
import type { AutoAttachRequest, JoinedVia } from './docker-attach-spec';
import { autoAttachRequest } from './docker-attach-spec';
import type { DockerApi, DockerEngineState, DockerEvent, EventWatch } from './docker-client';
import type { EventDecision, LifecycleRecord } from './docker-lifecycle';
import { decideDockerEvent, needsInspect } from './docker-lifecycle';

/** Problems shown in status: the newest few, one per container. */
const MAX_PROBLEMS = 16;

/** What the watcher needs of the ContainerManager. */
export interface AutoAttachTarget {
  recordOf(id: string): LifecycleRecord | null;
  /** True when another part attached it already (a container on the plugin's network): auto-attach leaves it alone. */
  attachedElsewhere(id: string): boolean;
  attach(ref: ContainerRef, cidrs: string[], opts: AttachOptions, via: JoinedVia): Promise<AttachedContainer>;
  /** Applies a decision about a container we hold, in the manager's queue. */
  apply(id: string, decision: Extract<EventDecision, { do: 'reattach' | 'stop' | 'forget' }>): Promise<void>;
}

export interface AutoAttachProblem {
  /** The container's name, or its short id when the engine did not say. */
  container: string;
  id: string;
  error: string;
  atMs: number;
}

export interface DockerWatchStatus {
  autoAttach: boolean;
  /** Null until the first connection attempt has an outcome. */
  engine: DockerEngineState | null;
  problems: AutoAttachProblem[];
}

export class DockerWatcher {
  private watch: EventWatch | null = null;
  private engine: DockerEngineState | null = null;
  private problems: AutoAttachProblem[] = [];
  /** The last piece of work per container, so its events are handled in order. */
  private readonly chains = new Map<string, Promise<void>>();
  private readonly pending = new Set<Promise<void>>();
  /** The listing of running containers in flight, if any. */
  private scanning: Promise<void> | null = null;

  constructor(
    private readonly docker: DockerApi,
    private readonly target: AutoAttachTarget,
    private readonly logger: Logger,
    private readonly clock: Clock,
    private readonly autoAttach: boolean,
  ) {}

  start(): void {
    if (this.watch !== null) return;
    this.watch = this.docker.watchEvents((ev) => this.enqueue(ev.id, () => this.handle(ev)), (s) => this.onEngine(s));
  }

  status(): DockerWatchStatus {
    return { autoAttach: this.autoAttach, engine: this.engine === null ? null : { ...this.engine }, problems: this.problems.map((p) => ({ ...p })) };
  }

  /** Stops following the engine and waits for the work already started. */
  async close(): Promise<void> {
    this.watch?.close();
    this.watch = null;
    await this.idle();
  }

  /** Resolves once every event handled so far (and the attaches it started) is done. */
  async idle(): Promise<void> {
    while (this.pending.size > 0 || this.scanning !== null) {
      await this.scanning;
      await Promise.allSettled([...this.pending]);
    }
  }

  // -------------------------------------------------------------------------

  private enqueue(id: string, fn: () => Promise<void>): void {
    const prev = this.chains.get(id) ?? Promise.resolve();
    const next = prev.then(fn).catch((err: unknown) => {
      this.logger.warn('docker event not handled', { container: id.slice(0, 12), error: errorMessage(err) });
    });
    this.chains.set(id, next);
    this.pending.add(next);
    void next.finally(() => {
      this.pending.delete(next);
      if (this.chains.get(id) === next) this.chains.delete(id);
    });
  }

  private onEngine(s: DockerEngineState): void {
    const was = this.engine;
    this.engine = s;
    // The engine (re)appeared: containers started while it or we were away have sent no event we saw.
    // (Its absence is logged once by the event stream and shown in status; nothing else to do.)
    if (s.reachable && was?.reachable !== true && this.autoAttach) this.scan();
  }

  private scan(): void {
    const list = this.docker.listRunning;
    if (list === undefined) return;
    const scan = list.call(this.docker).then((ids) => {
      for (const id of ids) this.enqueue(id, () => this.handle({ action: 'start', id, name: null, timeSec: 0 }));
    }, (err: unknown) => this.logger.warn('cannot list running Docker containers', { error: errorMessage(err) }));
    const tracked: Promise<void> = scan.finally(() => { if (this.scanning === tracked) this.scanning = null; });
    this.scanning = tracked;
  }

  private async handle(ev: DockerEvent): Promise<void> {
    // A removed container's problems are no one's any more.
    if (ev.action === 'destroy') this.clearProblem(ev.id);
    const record = this.target.recordOf(ev.id);
    let request: AutoAttachRequest | null = null;
    let name = ev.name ?? ev.id.slice(0, 12);
    if (needsInspect(record, ev.action, this.autoAttach)) {
      const info = await this.docker.inspect(ev.id).catch((err: unknown) => {
        this.report(ev.id, name, `cannot inspect the container: ${errorMessage(err)}`);
        return undefined;
      });
      if (info === undefined) return;
      // Gone or stopped already: nothing to attach now; a later start brings another event.
      if (info === null || !info.running) return;
      name = info.name;
      request = autoAttachRequest(info);
    }
    const d = decideDockerEvent(record, ev.action, request);
    switch (d.do) {
      case 'nothing':
        return;
      case 'report':
        this.report(ev.id, name, d.error);
        return;
      case 'attach':
        if (this.target.attachedElsewhere(ev.id)) return;
        await this.attachNew(ev.id, name, d.via, d.addresses);
        return;
      default:
        await this.target.apply(ev.id, d);
    }
  }

  private async attachNew(id: string, name: string, via: 'label' | 'env', addresses: string[]): Promise<void> {
    try {
      const c = await this.target.attach({ kind: 'docker', ref: id }, addresses, {}, via);
      this.clearProblem(id);
      this.logger.info('auto-attached container', { container: c.name, via, addresses: c.addresses.join(',') });
    } catch (err) {
      const msg = errorMessage(err);
      // Stopped between its start event and the attach: not an error of anyone's, but worth saying why it has no address.
      if (/not running|stopped while being attached|no such Docker container/.test(msg)) {
        this.report(id, name, `exited before it could be attached (${msg}); it is attached when it starts again`);
      } else {
        this.report(id, name, `not attached: ${msg}`);
      }
    }
  }

  private report(id: string, container: string, error: string): void {
    this.logger.warn('auto-attach', { container, error });
    this.problems = [{ container, id, error, atMs: this.clock.now() }, ...this.problems.filter((p) => p.id !== id)].slice(0, MAX_PROBLEMS);
  }

  private clearProblem(id: string): void {
    this.problems = this.problems.filter((p) => p.id !== id);
  }
}
