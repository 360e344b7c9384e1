// Reading the host's nftables ruleset (`nft -j list ruleset`) into the little
// that our firewall exceptions need: base chains with their hooks, and rules
// with their handles and comments. Used by the bridge's firewall exceptions
// (bridge-firewall.ts) and by host exposure (host-exposer.ts), which both find
// other tables' forward chains and their own tagged rules this way.
//
// It only reads: it must never add or delete a rule.

import { RouterError } from '../mesh/errors';
import { errorMessage } from '../../common/errors';
import type { CommandRunner } from './command-runner';

export interface FirewallChainRef {
  family: string;
  table: string;
  chain: string;
}

export interface NftChain extends FirewallChainRef {
  hook: string | null;
}

export interface NftRule extends FirewallChainRef {
  handle: number;
  comment: string | null;
}

export interface NftRuleset {
  chains: NftChain[];
  rules: NftRule[];
}

/** `nft -j list ruleset`: base chains with their hooks, and rules with their handles and comments. */
export async function listRuleset(runner: CommandRunner): Promise<NftRuleset> {
  const r = await runner.run('nft', ['-j', 'list', 'ruleset']);
  let parsed: unknown;
  try {
    parsed = JSON.parse(r.stdout);
  } catch (err) {
    throw new RouterError('io', `nft -j list ruleset printed something that is not JSON: ${errorMessage(err)}`);
  }
  const items = (parsed as { nftables?: unknown }).nftables;
  const out: NftRuleset = { chains: [], rules: [] };
  if (!Array.isArray(items)) return out;
  for (const item of items as unknown[]) {
    if (typeof item !== 'object' || item === null) continue;
    const chain = (item as { chain?: Record<string, unknown> }).chain;
    if (chain !== undefined) {
      out.chains.push({
        family: String(chain['family']),
        table: String(chain['table']),
        chain: String(chain['name']),
        hook: typeof chain['hook'] === 'string' ? chain['hook'] : null,
      });
    }
    const rule = (item as { rule?: Record<string, unknown> }).rule;
    if (rule !== undefined && typeof rule['handle'] === 'number') {
      out.rules.push({
        family: String(rule['family']),
        table: String(rule['table']),
        chain: String(rule['chain']),
        handle: rule['handle'],
        comment: typeof rule['comment'] === 'string' ? rule['comment'] : null,
      });
    }
  }
  return out;
}
