// The allocations and claims waiting on this peer. Each request is served
// from our own space when it can be; otherwise it waits, for the initial
// split or for space from another peer (space-exchange.ts), until it is
// served, refused, or times out with what it waited for. Owns the queue,
// each request's timeout and the retry timer while requests wait for space,
// all on the injected Clock. The queue is served again after every change
// (ipam.ts calls process()); every allocation is persisted before any
// request is answered, so a crash never hands out an address twice.

import type { Timer } from '../common/clock';
import { formatIp } from '../common/ip';
import { Cidr } from '../common/ip-cidr';
import { parseAddressWithPrefix, parseIpamCidr } from './address-range';
import { Allocation, validateContainerId } from './allocator';
import { IpamError } from './errors';
import { errorMessage } from '../common/errors';
import { formatMs, IpamContext } from './ipam-context';
import { SpaceExchange, SpaceNeed, spaceKey } from './space-exchange';
import { firstFree } from './space';
import type { StatusSource } from './status';

export interface AllocateOptions {
  /** CIDR inside the range ("net:" prefix allowed); default: --ipalloc-default-subnet. */
  subnet?: string;
  /** Overrides the request timeout. */
  timeoutMs?: number;
  /** Called each time what the request waits for changes (consensus, space from a peer). */
  onWaiting?: (why: string) => void;
}

export interface RequestQueueHooks {
  /** What the peer waits for while it has no ring (the status text). */
  waitingFor(): string | null;
  /** A request arrived before the ring: start the initial split. */
  startConsensus(): void;
}

interface PendingRequest extends SpaceNeed {
  container: string;
  prefixLen: number;
  startedMs: number;
  why: string | null;
  onWaiting: ((why: string) => void) | null;
  timer: Timer;
  resolve(cidr: string): void;
  reject(err: IpamError): void;
}

export class RequestQueue {
  private readonly pending: PendingRequest[] = [];
  /** Runs while some request waits for space from another peer, so a silent peer is asked again. */
  private retryTimer: Timer | null = null;

  constructor(private readonly ctx: IpamContext, private readonly space: SpaceExchange, private readonly hooks: RequestQueueHooks) {}

  get size(): number {
    return this.pending.length;
  }

  /** See Ipam.allocate. */
  allocate(containerId: string, opts: AllocateOptions): Promise<string> {
    const container = validateContainerId(containerId);
    const subnet = this.parseSubnet(opts.subnet);
    const within = this.ctx.range.spanOf(subnet)!;
    return this.enqueue({ kind: 'allocate', container, subnet, within, offset: null, prefixLen: subnet.prefixLen }, opts);
  }

  /** See Ipam.claim. */
  claim(containerId: string, cidr: string, opts: Omit<AllocateOptions, 'subnet'>): Promise<string> {
    const range = this.ctx.range;
    const container = validateContainerId(containerId);
    const { address, prefixLen } = parseAddressWithPrefix(cidr, 'address');
    const offset = range.offsetOf(address);
    const text = `${formatIp(address)}/${prefixLen}`;
    if (offset === null) return Promise.resolve(text);
    if (offset === 0 || offset === range.size - 1) {
      throw IpamError.config(`${text} is the ${offset === 0 ? 'network' : 'broadcast'} address of the IPAM range ${range.toString()}`);
    }
    const subnet = Cidr.containing(address, prefixLen);
    return this.enqueue({ kind: 'claim', container, subnet, within: { start: offset, end: offset + 1 }, offset, prefixLen }, opts);
  }

  /** The waiting requests, for the status. */
  describe(): StatusSource['pending'] {
    return this.pending.map((p) => ({
      container: p.container,
      kind: p.kind,
      subnet: p.kind === 'claim' ? `${this.ctx.range.formatOffset(p.offset!)}/${p.prefixLen}` : p.subnet.toString(),
      startedMs: p.startedMs,
      why: p.why,
    }));
  }

  /** Serves every waiting request we can; asks for space for the others. Runs after every change. */
  process(): void {
    const { ctx } = this;
    if (this.pending.length === 0) return;
    if (!ctx.ring.isSeeded()) {
      const why = this.hooks.waitingFor() ?? 'waiting';
      for (const p of this.pending) this.setWhy(p, why);
      return;
    }
    const owned = ctx.ring.ownedSpans();
    let allocated = false;
    const needSpace = new Map<string, PendingRequest>();
    for (const p of this.pending.slice()) {
      const done = (a: Allocation): void => {
        this.finish(p);
        p.resolve(ctx.formatAllocation(a));
      };
      if (p.kind === 'allocate') {
        const have = ctx.allocator.findForContainer(p.container, p.within);
        if (have) { done(have); continue; }
        const offset = firstFree(owned, ctx.allocator.used, { rangeSize: ctx.range.size, within: p.within });
        if (offset !== null) {
          done(ctx.allocator.add(p.container, offset, p.prefixLen));
          allocated = true;
          continue;
        }
      } else {
        const offset = p.offset!;
        const holder = ctx.allocator.holderOf(offset);
        if (holder) {
          this.finish(p);
          if (holder.container === p.container) {
            p.resolve(`${ctx.range.formatOffset(offset)}/${p.prefixLen}`);
          } else {
            p.reject(new IpamError('conflict', `${ctx.range.formatOffset(offset)} is already held by container ${holder.container}`));
          }
          continue;
        }
        if (ctx.ring.ownerOf(offset) === ctx.self) {
          done(ctx.allocator.add(p.container, offset, p.prefixLen));
          allocated = true;
          continue;
        }
      }
      const key = spaceKey(p.within);
      if (!needSpace.has(key)) needSpace.set(key, p);
      else this.setWhy(p, needSpace.get(key)!.why ?? 'waiting for space');
    }
    if (allocated) {
      ctx.persist();
      ctx.scheduleFreeReport();
    }
    for (const p of needSpace.values()) {
      const outcome = this.space.ask(p);
      if ('refuse' in outcome) {
        this.finish(p);
        p.reject(outcome.refuse);
      } else {
        this.setWhy(p, outcome.why);
      }
    }
    this.space.keepOnly(new Set(needSpace.keys()));
    if (needSpace.size > 0) this.armRetry(); else this.cancel();
  }

  /** Fails every waiting request (shutdown, reset). */
  failAll(err: IpamError): void {
    for (const p of this.pending.splice(0)) {
      p.timer.cancel();
      p.reject(err);
    }
  }

  cancel(): void {
    this.retryTimer?.cancel();
    this.retryTimer = null;
  }

  private enqueue(req: Omit<PendingRequest, 'startedMs' | 'why' | 'onWaiting' | 'timer' | 'resolve' | 'reject'>, opts: AllocateOptions): Promise<string> {
    const { ctx } = this;
    ctx.checkUsable();
    const timeoutMs = opts.timeoutMs ?? ctx.timings.requestTimeoutMs;
    if (!Number.isFinite(timeoutMs) || timeoutMs < 0) throw IpamError.config(`timeoutMs must be 0 or more, got ${timeoutMs}`);
    // The container is alive again: its dying addresses are its own once more.
    if (ctx.allocator.revive(req.container)) ctx.persist();
    return new Promise<string>((resolve, reject) => {
      const p: PendingRequest = {
        ...req,
        startedMs: ctx.clock.now(),
        why: null,
        onWaiting: opts.onWaiting ?? null,
        timer: ctx.clock.setTimer(timeoutMs, () => {
          const i = this.pending.indexOf(p);
          if (i < 0) return;
          this.pending.splice(i, 1);
          const what = p.kind === 'claim' ? `${ctx.range.formatOffset(p.offset!)} for ${p.container}` : `an address for ${p.container} in ${p.subnet.toString()}`;
          reject(new IpamError('timeout', `could not get ${what} within ${formatMs(timeoutMs)}: ${p.why ?? this.hooks.waitingFor() ?? 'no answer'}`));
        }),
        resolve,
        reject,
      };
      this.pending.push(p);
      if (!ctx.ring.isSeeded()) this.hooks.startConsensus();
      this.process();
    });
  }

  private armRetry(): void {
    if (this.retryTimer !== null) return;
    this.retryTimer = this.ctx.clock.setTimer(this.ctx.timings.spaceRequestRetryMs, () => {
      this.retryTimer = null;
      if (!this.ctx.stopped && !this.ctx.left) this.process();
    });
  }

  private finish(p: PendingRequest): void {
    p.timer.cancel();
    const i = this.pending.indexOf(p);
    if (i >= 0) this.pending.splice(i, 1);
  }

  private setWhy(p: PendingRequest, why: string): void {
    if (p.why === why) return;
    p.why = why;
    if (p.onWaiting) {
      try {
        p.onWaiting(why);
      } catch (err) {
        this.ctx.log.warn('progress callback failed', { error: errorMessage(err) });
      }
    }
  }

  private parseSubnet(text: string | undefined): Cidr {
    const { config, range } = this.ctx;
    if (text === undefined || text === '' || text === 'net:default') return config.defaultSubnet;
    const s = text.startsWith('net:') ? text.slice(4) : text;
    const subnet = parseIpamCidr(s, 'subnet');
    if (!range.cidr.covers(subnet)) {
      throw IpamError.config(`subnet ${subnet.toString()} is not inside the IPAM range ${range.toString()}`);
    }
    if (subnet.hostBits < 2) throw IpamError.config(`subnet ${subnet.toString()} is too small to allocate from; use at least a /${subnet.family === 4 ? 30 : 126}`);
    return subnet;
  }
}
