// Giving addresses back: a release now (a container detached or removed) and
// a release later (a container died: its addresses stay reserved for a grace
// period so a restart gets them back), with the one timer, on the injected
// Clock, that frees the earliest address due. Every release is persisted
// before anything else hears of it, then free counts are reported and waiting
// requests retried, since the freed space may be what they wait for.

import type { Timer } from '../common/clock';
import { Allocation, validateContainerId } from './allocator';
import { parseAddressWithPrefix } from './address-range';
import { IpamError } from './errors';
import type { IpamContext } from './ipam-context';

export interface ReleaseOptions {
  /** 0 (the default): release at once (container removed). >0: keep the addresses that long (container died). */
  graceMs?: number;
}

export class Releases {
  private timer: Timer | null = null;
  private timerAtMs = 0;

  /** `freed` runs after every release (the request queue retries what waits). */
  constructor(private readonly ctx: IpamContext, private readonly freed: () => void) {}

  /** Releases one address of a container, or all of them when `cidr` is omitted; returns what was released. */
  release(containerId: string, cidr?: string): string[] {
    const { allocator, range } = this.ctx;
    const container = validateContainerId(containerId);
    let gone: Allocation[];
    if (cidr === undefined) {
      gone = allocator.removeContainer(container);
    } else {
      const { address } = parseAddressWithPrefix(cidr, 'address');
      const offset = range.offsetOf(address);
      const a = offset === null ? undefined : allocator.holderOf(offset);
      if (!a || a.container !== container) return [];
      gone = [allocator.remove(a.offset)!];
    }
    if (gone.length > 0) this.afterReleases(gone, 'released');
    return gone.map((a) => this.ctx.formatAllocation(a));
  }

  /**
   * A container went away. Removed (graceMs 0): its addresses are free at
   * once. Died (graceMs > 0): they stay reserved for that long (allocate or
   * claim by the same container revives them).
   */
  releaseContainer(containerId: string, opts: ReleaseOptions = {}): string[] {
    const { ctx } = this;
    const container = validateContainerId(containerId);
    const graceMs = opts.graceMs ?? 0;
    if (!Number.isFinite(graceMs) || graceMs < 0) throw IpamError.config(`graceMs must be 0 or more, got ${graceMs}`);
    const list = ctx.allocator.ofContainer(container).map((a) => ctx.formatAllocation(a));
    if (list.length === 0) return [];
    if (graceMs === 0) return this.release(container);
    ctx.allocator.markDying(container, ctx.clock.now() + graceMs);
    ctx.persist();
    this.arm();
    ctx.log.info('container died; its addresses are kept for its restart', { container, addresses: list.join(','), graceMs });
    return list;
  }

  /** One timer for the earliest address due for release; call after anything that may change it. */
  arm(): void {
    const { ctx } = this;
    const next = ctx.allocator.nextReleaseAtMs();
    if (next === null) {
      this.cancel();
      return;
    }
    if (this.timer !== null && this.timerAtMs === next) return;
    this.timer?.cancel();
    this.timerAtMs = next;
    this.timer = ctx.clock.setTimer(Math.max(0, next - ctx.clock.now()), () => {
      this.timer = null;
      if (ctx.stopped || ctx.left) return;
      const due = ctx.allocator.releaseDue(ctx.clock.now());
      if (due.length > 0) this.afterReleases(due, 'released after the grace period');
      else this.arm();
    });
  }

  cancel(): void {
    this.timer?.cancel();
    this.timer = null;
  }

  private afterReleases(gone: Allocation[], what: string): void {
    const { ctx } = this;
    ctx.persist();
    ctx.scheduleFreeReport();
    this.arm();
    ctx.log.info(`addresses ${what}`, { container: gone[0]!.container, addresses: gone.map((a) => ctx.formatAllocation(a)).join(',') });
    this.freed();
  }
}
