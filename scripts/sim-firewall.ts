// The firewall of a simulated network: which pairs of hosts may not reach each
// other over the underlay (all traffic, or only UDP or TCP), rendered into the
// nftables table `wvsim` inside each host's namespace. It never touches the
// root namespace's firewall.

import type { SimHost } from './sim-host';

export type BlockKind = 'all' | 'udp' | 'tcp';

const FIREWALL_TABLE = 'wvsim';

export class SimFirewall {
  // Per host, the peers it drops and how; rendered whole into table `wvsim` on every change.
  private readonly blocks = new Map<SimHost, Map<SimHost, Set<BlockKind>>>();

  constructor(private readonly log: (line: string) => void) {}

  /** Drops `what` between a and b in both directions, with rules in both namespaces. */
  async block(a: SimHost, b: SimHost, what: BlockKind): Promise<void> {
    this.blockSet(a, b).add(what);
    this.blockSet(b, a).add(what);
    await this.render(a);
    await this.render(b);
  }

  /** Removes the blocks between a and b (only `what`, or all kinds when omitted). */
  async unblock(a: SimHost, b: SimHost, what?: BlockKind): Promise<void> {
    for (const [x, y] of [[a, b], [b, a]] as const) {
      const set = this.blockSet(x, y);
      if (what === undefined) set.clear();
      else set.delete(what);
    }
    await this.render(a);
    await this.render(b);
  }

  private blockSet(from: SimHost, to: SimHost): Set<BlockKind> {
    let perHost = this.blocks.get(from);
    if (!perHost) {
      perHost = new Map();
      this.blocks.set(from, perHost);
    }
    let set = perHost.get(to);
    if (!set) {
      set = new Set();
      perHost.set(to, set);
    }
    return set;
  }

  // The whole table is replaced in one `nft -f` transaction: the leading
  // "table ...; delete table ..." pair makes the delete valid whether or not the
  // table exists, so a host never sees a half-written rule set.
  private async render(h: SimHost): Promise<void> {
    const inRules: string[] = [];
    const outRules: string[] = [];
    for (const [peer, kinds] of this.blocks.get(h) ?? new Map<SimHost, Set<BlockKind>>()) {
      for (const kind of [...kinds].sort()) {
        const proto = kind === 'all' ? '' : ` meta l4proto ${kind}`;
        inRules.push(`    ip saddr ${peer.address}${proto} drop`);
        outRules.push(`    ip daddr ${peer.address}${proto} drop`);
      }
    }
    let script = `table inet ${FIREWALL_TABLE}\ndelete table inet ${FIREWALL_TABLE}\n`;
    if (inRules.length > 0) {
      script += `table inet ${FIREWALL_TABLE} {\n` +
        `  chain input {\n    type filter hook input priority 0; policy accept;\n${inRules.join('\n')}\n  }\n` +
        `  chain output {\n    type filter hook output priority 0; policy accept;\n${outRules.join('\n')}\n  }\n}\n`;
    }
    this.log(`nft in ${h.ns}: ${inRules.length} input and ${outRules.length} output rules`);
    await h.exec(['nft', '-f', '-'], { input: script, check: true, timeoutMs: 10_000 });
  }
}
