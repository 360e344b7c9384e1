// The nftables rules of host exposure, as nft JSON values: the `ip
// weave-expose` table that masquerades traffic leaving an exposed subnet, and
// the accept rules, tagged `weave-expose:<bridge>`, that host-exposer.ts puts
// at the head of other tables' forward chains.
//
// Pure: it only builds values; it must never run nft or read the ruleset.

import type { FirewallChainRef } from './nft-ruleset';

/** Our nftables table (family ip). */
export const EXPOSE_TABLE = 'weave-expose';

/** The comment on our rules in other tables' forward chains. */
export function exposeComment(bridge: string): string {
  return `weave-expose:${bridge}`;
}

function nameIs(key: 'iifname' | 'oifname', op: '==' | '!=', name: string): unknown {
  return { match: { op, left: { meta: { key } }, right: name } };
}

function addrIn(field: 'saddr' | 'daddr', op: '==' | '!=', subnet: string): unknown {
  const [addr, len] = subnet.split('/');
  return { match: { op, left: { payload: { protocol: 'ip', field } }, right: { prefix: { addr, len: Number(len) } } } };
}

/**
 * The nft commands that make our table hold exactly the NAT for `subnets`:
 * the leading add/delete pair makes the delete valid whether or not the table
 * exists, so the whole table is replaced in one transaction. No subnets: the
 * table is deleted. `oifname != bridge`: bridged frames (br_netfilter passes
 * them through postrouting too) and traffic into the overlay are never NATed.
 */
export function natTableCommands(bridge: string, subnets: readonly string[]): unknown[] {
  const table = { family: 'ip', name: EXPOSE_TABLE };
  const cmds: unknown[] = [{ add: { table } }, { delete: { table } }];
  if (subnets.length === 0) return cmds;
  cmds.push({ add: { table } });
  cmds.push({ add: { chain: { family: 'ip', table: EXPOSE_TABLE, name: 'postrouting', type: 'nat', hook: 'postrouting', prio: 100, policy: 'accept' } } });
  for (const subnet of subnets) {
    cmds.push({
      add: {
        rule: {
          family: 'ip', table: EXPOSE_TABLE, chain: 'postrouting', comment: exposeComment(bridge),
          expr: [nameIs('oifname', '!=', bridge), addrIn('saddr', '==', subnet), addrIn('daddr', '!=', subnet), { masquerade: null }],
        },
      },
    });
  }
  return cmds;
}

/**
 * The two accept rules for one forward chain, as Weave Net put them in
 * FORWARD: from the bridge to elsewhere, and replies from elsewhere back in.
 */
export function forwardAcceptRules(chain: FirewallChainRef, bridge: string): unknown[] {
  const base = { family: chain.family, table: chain.table, chain: chain.chain, comment: exposeComment(bridge) };
  return [
    { ...base, expr: [nameIs('iifname', '==', bridge), nameIs('oifname', '!=', bridge), { accept: null }] },
    {
      ...base,
      expr: [nameIs('oifname', '==', bridge), nameIs('iifname', '!=', bridge), { match: { op: 'in', left: { ct: { key: 'state' } }, right: ['established', 'related'] } }, { accept: null }],
    },
  ];
}

/** The argument for `nft -j`: one transaction of `cmds`. */
export function nftScript(cmds: unknown[]): string {
  return JSON.stringify({ nftables: cmds });
}

