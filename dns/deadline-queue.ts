// Timeouts of one fixed length for many waiters under one timer: the UDP
// attempts of forwarded queries (dns/forwarder.ts). A timer per query cost a
// Timeout object and a closure that lived across the upstream round trip,
// copied by every scavenge of the router's small young generation. Waiters
// are linked into a list in the order they were added, which with one delay
// is the order of their deadlines; the timer is set for the first, and when
// it fires it expires every waiter that is due and is set again for the next.
// Removing a waiter (answered) is O(1) and leaves the timer alone: it finds
// the new first waiter not yet due and waits again. Adapter: owns one timer.

/** A waiter; the queue's fields live on it so that waiting allocates nothing. */
export interface DeadlineWaiter {
  deadlinePrev: DeadlineWaiter | null;
  deadlineNext: DeadlineWaiter | null;
  /** When it expires (the queue's clock), or -1 while it is not queued. */
  deadlineAt: number;
  /** Its time is up; it has been removed already. */
  expired(): void;
}

export class DeadlineQueue {
  private head: DeadlineWaiter | null = null;
  private tail: DeadlineWaiter | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly fire = (): void => this.expireDue();

  /** `now` must not go backwards (performance.now, not the wall clock). */
  constructor(private readonly delayMs: number, private readonly now: () => number = () => performance.now()) {}

  /** Queues `w` to expire delayMs from now; it must not be queued already. */
  add(w: DeadlineWaiter): void {
    w.deadlineAt = this.now() + this.delayMs;
    w.deadlinePrev = this.tail;
    w.deadlineNext = null;
    if (this.tail === null) this.head = w;
    else this.tail.deadlineNext = w;
    this.tail = w;
    if (this.timer === null) this.timer = setTimeout(this.fire, this.delayMs);
  }

  /** Takes `w` out; a no-op when it is not queued. */
  remove(w: DeadlineWaiter): void {
    if (w.deadlineAt < 0) return;
    w.deadlineAt = -1;
    const prev = w.deadlinePrev;
    const next = w.deadlineNext;
    if (prev === null) this.head = next;
    else prev.deadlineNext = next;
    if (next === null) this.tail = prev;
    else next.deadlinePrev = prev;
    w.deadlinePrev = null;
    w.deadlineNext = null;
    if (this.head === null) this.stop();
  }

  /** Forgets every waiter without expiring it, and the timer. */
  clear(): void {
    while (this.head !== null) this.remove(this.head);
    this.stop();
  }

  private stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private expireDue(): void {
    this.timer = null;
    const now = this.now();
    for (let w = this.head; w !== null && w.deadlineAt <= now; w = this.head) {
      this.remove(w);
      w.expired();
    }
    // expired() may have added waiters (a next upstream), which set the timer.
    if (this.head !== null && this.timer === null) this.timer = setTimeout(this.fire, Math.max(1, Math.ceil(this.head.deadlineAt - now)));
  }
}
