// Which container holds which address on this peer. Pure bookkeeping: it does
// not know the ring (request-queue.ts checks that an address is in our
// space before adding it) and owns no timers (a dying container carries the
// instant its addresses are due for release; the owner sets the timer).
//
// Invariants: one holder per offset; a container has at most one address per
// subnet it asked for (allocate is idempotent per container and subnet, as in
// Weave Net); `used` mirrors the keys of `byOffset`.

import type { Span } from './address-range';
import { MAX_ALLOCATIONS, MAX_CONTAINER_ID_BYTES } from './constants';
import { IpamError } from './errors';
import { SortedOffsets } from './space';

export interface Allocation {
  readonly container: string;
  readonly offset: number;
  /** Prefix length the container uses with this address (its subnet's). */
  readonly prefixLen: number;
  /** Wall-clock instant the address is released (a container that died), or null while held. */
  releaseAtMs: number | null;
}

const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;
const encoder = new TextEncoder();

/** Container ids are Docker ids/names, netns:NAME or pid:PID; anything printable and short. */
export function validateContainerId(id: unknown, what = 'container'): string {
  if (typeof id !== 'string' || id.trim() === '') throw IpamError.config(`${what} must be a non-empty string (container id, netns:NAME or pid:PID)`);
  const bytes = encoder.encode(id).length;
  if (bytes > MAX_CONTAINER_ID_BYTES) throw IpamError.config(`${what} is ${bytes} bytes long, over the limit of ${MAX_CONTAINER_ID_BYTES}`);
  if (CONTROL_CHARS.test(id)) throw IpamError.config(`${what} ${JSON.stringify(id)} contains control characters`);
  return id;
}

export class Allocator {
  readonly used = new SortedOffsets();
  private readonly byOffset = new Map<number, Allocation>();
  private readonly byContainer = new Map<string, Allocation[]>();

  get count(): number {
    return this.byOffset.size;
  }

  holderOf(offset: number): Allocation | undefined {
    return this.byOffset.get(offset);
  }

  ofContainer(container: string): readonly Allocation[] {
    return this.byContainer.get(container) ?? [];
  }

  /** The container's address inside `within`, if it has one already. */
  findForContainer(container: string, within: Span): Allocation | undefined {
    return this.ofContainer(container).find((a) => a.offset >= within.start && a.offset < within.end);
  }

  /** Records a new holder; the offset must be free. */
  add(container: string, offset: number, prefixLen: number): Allocation {
    if (this.byOffset.has(offset)) throw new RangeError(`offset ${offset} is already held`);
    if (this.byOffset.size >= MAX_ALLOCATIONS) throw IpamError.limit('allocations on this peer', this.byOffset.size + 1, MAX_ALLOCATIONS);
    const a: Allocation = { container, offset, prefixLen, releaseAtMs: null };
    this.byOffset.set(offset, a);
    this.used.add(offset);
    const list = this.byContainer.get(container);
    if (list) list.push(a); else this.byContainer.set(container, [a]);
    return a;
  }

  remove(offset: number): Allocation | undefined {
    const a = this.byOffset.get(offset);
    if (!a) return undefined;
    this.byOffset.delete(offset);
    this.used.delete(offset);
    const list = this.byContainer.get(a.container) ?? [];
    const rest = list.filter((x) => x !== a);
    if (rest.length > 0) this.byContainer.set(a.container, rest); else this.byContainer.delete(a.container);
    return a;
  }

  removeContainer(container: string): Allocation[] {
    const list = this.ofContainer(container).slice();
    for (const a of list) this.remove(a.offset);
    return list;
  }

  /** Marks a container's addresses for release at `atMs` (it died); returns how many. */
  markDying(container: string, atMs: number): number {
    const list = this.ofContainer(container);
    for (const a of list) a.releaseAtMs = atMs;
    return list.length;
  }

  /** The container is back: keeps its addresses. True when any was dying. */
  revive(container: string): boolean {
    let any = false;
    for (const a of this.ofContainer(container)) {
      if (a.releaseAtMs !== null) { a.releaseAtMs = null; any = true; }
    }
    return any;
  }

  /** Removes every allocation due for release at `nowMs`; returns them. */
  releaseDue(nowMs: number): Allocation[] {
    const due = this.all().filter((a) => a.releaseAtMs !== null && a.releaseAtMs <= nowMs);
    for (const a of due) this.remove(a.offset);
    return due;
  }

  /** Earliest pending release instant, or null. */
  nextReleaseAtMs(): number | null {
    let next: number | null = null;
    for (const a of this.byOffset.values()) {
      if (a.releaseAtMs !== null && (next === null || a.releaseAtMs < next)) next = a.releaseAtMs;
    }
    return next;
  }

  all(): Allocation[] {
    return [...this.byOffset.values()].sort((a, b) => a.offset - b.offset);
  }

  clear(): void {
    for (const a of this.all()) this.remove(a.offset);
  }
}
