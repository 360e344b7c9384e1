// The faults of the chaos suite (chaos.ts) and the schedule that orders them.
// Each fault acts only inside the namespaces of one SimNetwork:
//   flap       the switch-side link of a host goes down, then up
//   loss       nftables table `wvchaos` in a host's namespace drops 5% of its
//              underlay packets each way (`numgen random mod 100 < 5 drop`;
//              this kernel has no netem)
//   kill       kill -9 of a host's router, then `weave launch` again with the
//              same arguments (same datadir, so the same peer name)
//   partition  two groups of hosts drop everything between them
//              (SimNetwork.blockBetween), with a container attached on each
//              side while they are apart
//   remove     a host is gone for good: router killed, link down, and
//              `weave rmpeer` of its peer name on one survivor
// The schedule is a pure function of the seed, the duration and the hosts.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SimHost } from './sim-host';
import type { SimNetwork } from './sim-network';
import { run } from './command';
import { processAlive as alive } from '../common/process-alive';
import { PID_FILE } from '../cli/launch';
import { SUPERVISOR_PID_FILE } from '../cli/supervisor';

export type FaultKind = 'flap' | 'loss' | 'kill' | 'partition' | 'remove';
export const FAULT_KINDS: readonly FaultKind[] = ['flap', 'loss', 'kill', 'partition', 'remove'];

export interface PlannedFault {
  kind: FaultKind;
  /** Seconds from the start of the fault phase. */
  atS: number;
  /** How long the fault lasts before it is healed (0 for remove: it never heals). */
  holdS: number;
  /** The host(s) it hits; for a partition, side A (side B is every other live host). */
  hosts: string[];
}

/** Seeded xorshift32: the same seed gives the same schedule and the same mutations. */
export class SeededRng {
  private s: number;
  constructor(seed: number) { this.s = (seed >>> 0) || 0x9e3779b9; }
  next(): number {
    let x = this.s;
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    this.s = x;
    return x / 0x100000000;
  }
  int(lo: number, hi: number): number { return lo + Math.floor(this.next() * (hi - lo + 1)); }
  pick<T>(xs: readonly T[]): T { return xs[Math.floor(this.next() * xs.length)]!; }
}

const HOLD_S: Record<Exclude<FaultKind, 'remove'>, [number, number]> = {
  flap: [3, 8], loss: [20, 40], kill: [2, 5], partition: [10, 20],
};
/** Quiet time after each heal, in which recovery is measured before the next fault. */
export const GAP_S = 8;

/**
 * Faults one after another (so each heal's recovery is measured alone), cycling
 * through `kinds` on random hosts until `durationS` is used up. `remove`, when
 * listed, comes last and hits the last host, leaving time to see its names go.
 */
export function planFaults(opts: { seed: number; durationS: number; hosts: string[]; kinds: readonly FaultKind[]; shortHolds?: boolean }): PlannedFault[] {
  const rng = new SeededRng(opts.seed);
  const removeAtEnd = opts.kinds.includes('remove');
  const removed = removeAtEnd ? opts.hosts[opts.hosts.length - 1]! : null;
  const pool = opts.hosts.filter((h) => h !== removed);
  const cycle = opts.kinds.filter((k): k is Exclude<FaultKind, 'remove'> => k !== 'remove');
  const endS = opts.durationS - (removeAtEnd ? 30 : 0);
  const out: PlannedFault[] = [];
  let t = 2;
  for (let i = 0; cycle.length > 0; i++) {
    const kind = cycle[i % cycle.length]!;
    const [lo, hi] = HOLD_S[kind];
    const holdS = opts.shortHolds ? lo : rng.int(lo, hi);
    if (t + holdS + GAP_S > endS) break;
    let hosts: string[];
    if (kind === 'partition') {
      const shuffled = [...pool].sort(() => rng.next() - 0.5);
      hosts = shuffled.slice(0, rng.int(1, Math.max(1, Math.floor(pool.length / 2))));
    } else {
      hosts = [rng.pick(pool)];
    }
    out.push({ kind, atS: t, holdS, hosts });
    t += holdS + GAP_S;
  }
  if (removed !== null) out.push({ kind: 'remove', atS: Math.max(t, endS), holdS: 0, hosts: [removed] });
  return out;
}

// ---------------------------------------------------------------------------
// Acting on the network

const LOSS_TABLE = 'wvchaos';

export async function setLoss(h: SimHost, percent: number | null): Promise<void> {
  let script = `table inet ${LOSS_TABLE}\ndelete table inet ${LOSS_TABLE}\n`;
  if (percent !== null) {
    script += `table inet ${LOSS_TABLE} {\n` +
      `  chain input { type filter hook input priority -5; policy accept; iifname "eth0" numgen random mod 100 < ${percent} drop; }\n` +
      `  chain output { type filter hook output priority -5; policy accept; oifname "eth0" numgen random mod 100 < ${percent} drop; }\n}\n`;
  }
  await h.exec(['nft', '-f', '-'], { input: script, check: true, timeoutMs: 10_000 });
}

export async function setLink(net: SimNetwork, h: SimHost, up: boolean): Promise<void> {
  await run(['ip', '-n', net.switchNs, 'link', 'set', `v-${h.name}`, up ? 'up' : 'down'], { check: true, timeoutMs: 10_000 });
}

/** The pid in the host's weave.pid, or null. */
export function routerPid(h: SimHost): number | null {
  return pidFrom(h, PID_FILE);
}

/** The pid of the router's supervisor (`weave launch`), or null. */
export function supervisorPid(h: SimHost): number | null {
  return pidFrom(h, SUPERVISOR_PID_FILE);
}

function pidFrom(h: SimHost, file: string): number | null {
  try {
    const pid = Number(readFileSync(join(h.datadir, file), 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}


/** kill -9 of the router process, waiting until it is gone. Returns the pid killed. */
export async function killRouter(h: SimHost): Promise<number | null> {
  const pid = routerPid(h);
  if (pid === null || !alive(pid)) return null;
  process.kill(pid, 'SIGKILL');
  for (let i = 0; i < 100 && alive(pid); i++) await new Promise((r) => setTimeout(r, 50));
  return pid;
}

/** Partition: every pair across the two groups drops everything. */
export async function setPartition(net: SimNetwork, sideA: string[], sideB: string[], apart: boolean): Promise<void> {
  for (const a of sideA) {
    for (const b of sideB) {
      if (apart) await net.blockBetween(a, b, 'all');
      else await net.unblock(a, b);
    }
  }
}
