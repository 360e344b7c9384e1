// Moving address space between peers at run time, both ways: asking another
// peer for space when a waiting request does not fit in ours (whom to ask,
// when to ask again, when to give up), and answering such asks from others
// (give half of a free run, or say we have none). Owns the record of our open
// asks, of recent denials and of recent gifts, each bounded and keyed by the
// requested span. The choices themselves are pure (donation.ts); this file
// sends the unicasts and reads the time from the injected Clock, never a
// timer: the request queue re-runs and calls ask() again.

import { familyBits } from '../common/ip';
import { Cidr } from '../common/ip-cidr';
import type { PeerName } from '../router/mesh/peer-name';
import type { Span } from './address-range';
import { chooseDonation, spaceHolders } from './donation';
import { IpamError } from './errors';
import type { IpamContext } from './ipam-context';
import { encodeIpamMessage } from './messages';

/** A peer that said it has nothing to give is not asked again for this many retry periods. */
const DENIAL_MEMORY_RETRIES = 5;
/** Gifts remembered (per asker and span) to refuse askers that ask too often. */
const MAX_REMEMBERED_GIFTS = 1024;

/** What a waiting request needs space for. */
export interface SpaceNeed {
  kind: 'allocate' | 'claim';
  subnet: Cidr;
  within: Span;
  /** Claims: the address asked for. */
  offset: number | null;
}

/** What became of an ask: the request is refused, or waits for the reason given. */
export type AskOutcome = { refuse: IpamError } | { why: string };

interface SpaceAsk {
  target: PeerName;
  sentMs: number;
  attempt: number;
}

/** Requests for the same span share one ask. */
export function spaceKey(within: Span): string {
  return `${within.start}-${within.end}`;
}

export class SpaceExchange {
  private readonly asks = new Map<string, SpaceAsk>();
  /** Who recently said it has nothing to give, per requested span; remembered for a few retry periods. */
  private readonly denials = new Map<string, Map<PeerName, number>>();
  /** When we last gave space to a peer, per requested span. */
  private readonly lastDonationMs = new Map<string, number>();

  constructor(private readonly ctx: IpamContext) {}

  /**
   * No free address of ours fits `need`: find who has some and ask (unicast).
   * A request everyone reports full for is refused at once.
   */
  ask(need: SpaceNeed): AskOutcome {
    const { ctx } = this;
    const key = spaceKey(need.within);
    const candidates = spaceHolders(ctx.ring, need.within, need.kind === 'claim' ? need.offset : null);
    if (candidates.length === 0) {
      if (need.kind === 'claim') {
        const owner = ctx.ring.ownerOf(need.offset!);
        return { refuse: new IpamError('conflict', `${ctx.range.formatOffset(need.offset!)} is in use on peer ${owner !== null ? ctx.describePeer(owner) : '?'}`) };
      }
      return { refuse: new IpamError('full', `no free address left in ${need.subnet.toString()}: every peer reports its share as used`) };
    }
    const now = ctx.clock.now();
    const denied = this.denials.get(key);
    const deniedRecently = (peer: PeerName): boolean => {
      const at = denied?.get(peer);
      return at !== undefined && now - at < DENIAL_MEMORY_RETRIES * ctx.timings.spaceRequestRetryMs;
    };
    const reachable = candidates.filter((c) => ctx.reachable.has(c.peer));
    const live = reachable.filter((c) => !deniedRecently(c.peer));
    // Refused only when every holder is reachable and said no; unreachable holders may still have space.
    if (reachable.length === candidates.length && live.length === 0) {
      const names = reachable.map((c) => ctx.describePeer(c.peer)).join(', ');
      if (need.kind === 'claim') {
        return { refuse: new IpamError('conflict', `${ctx.range.formatOffset(need.offset!)} is in use on peer ${names}`) };
      }
      return { refuse: new IpamError('full', `no free address left in ${need.subnet.toString()}: peer(s) ${names} have none to spare`) };
    }
    if (live.length === 0) {
      const names = candidates.filter((c) => !ctx.reachable.has(c.peer)).map((c) => ctx.describePeer(c.peer)).join(', ');
      const what = need.kind === 'claim' ? `${ctx.range.formatOffset(need.offset!)} belongs to` : `the free addresses in ${need.subnet.toString()} belong to`;
      return { why: `waiting for space: ${what} unreachable peer(s) ${names} (weave rmpeer if they are gone for good)` };
    }
    const prev = this.asks.get(key);
    if (prev && now - prev.sentMs < ctx.timings.spaceRequestRetryMs && live.some((c) => c.peer === prev.target)) {
      return { why: `waiting for space from peer ${ctx.describePeer(prev.target)}` };
    }
    const attempt = prev ? prev.attempt + 1 : 0;
    // Most free first; on retries walk down the list so one silent peer cannot stall us.
    const target = live[attempt % live.length]!.peer;
    const range = ctx.range;
    const subnet = need.kind === 'claim' ? Cidr.containing(range.addressAt(need.offset!), familyBits(range.family)) : need.subnet;
    const sent = ctx.unicast(target, encodeIpamMessage({ kind: 'space-request', request: { range, subnet } }));
    this.asks.set(key, { target, sentMs: now, attempt });
    ctx.log.debug('asked for space', { peer: target, subnet: need.subnet.toString(), sent });
    return { why: `waiting for space from peer ${ctx.describePeer(target)}` };
  }

  /** Forgets asks and denials for spans nobody waits for any more. */
  keepOnly(keys: ReadonlySet<string>): void {
    for (const key of [...this.asks.keys()]) if (!keys.has(key)) this.asks.delete(key);
    for (const key of [...this.denials.keys()]) if (!keys.has(key)) this.denials.delete(key);
  }

  /**
   * Another peer is out of space: give it half of our largest free run in
   * the subnet it asked for (the one address, for a claim). We only give what
   * is free, so no container of ours is affected. True when we gave some: our
   * ring entries changed and the caller persists and gossips them.
   */
  handleRequest(src: PeerName, subnet: Cidr): boolean {
    const { ctx } = this;
    if (!ctx.ring.isSeeded() || src === ctx.self) return false;
    const within = ctx.range.spanOf(subnet);
    if (within === null) return false;
    // A well-behaved peer asks once per retry period per subnet; more often
    // than that is a bug or abuse, and must not drain our space.
    const now = ctx.clock.now();
    const askKey = `${src}|${spaceKey(within)}`;
    const lastGift = this.lastDonationMs.get(askKey);
    if (lastGift !== undefined && now - lastGift < ctx.timings.spaceRequestRetryMs / 2) return false;
    const give = chooseDonation(ctx.ring, ctx.allocator, within);
    if (give === null) {
      // Nothing to give: say so, and make sure the asker sees our true free count.
      ctx.reportFreeNow();
      ctx.unicast(src, encodeIpamMessage({ kind: 'space-denied', request: { range: ctx.range, subnet } }));
      return false;
    }
    if (this.lastDonationMs.size >= MAX_REMEMBERED_GIFTS) this.lastDonationMs.clear();
    this.lastDonationMs.set(askKey, now);
    ctx.ring.transfer(give, src);
    ctx.log.info('gave address space to a peer that ran out', { peer: src, from: ctx.range.formatOffset(give.start), count: give.end - give.start });
    return true;
  }

  /**
   * A peer we asked has nothing for us there: a claim fails, an allocation
   * asks the next peer. True when the caller should serve the queue again.
   */
  handleDenied(src: PeerName, subnet: Cidr): boolean {
    const within = this.ctx.range.spanOf(subnet);
    if (within === null) return false;
    const key = spaceKey(within);
    let denials = this.denials.get(key);
    if (!denials) { denials = new Map(); this.denials.set(key, denials); }
    denials.set(src, this.ctx.clock.now());
    this.asks.delete(key);
    return true;
  }
}
