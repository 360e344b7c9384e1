// IPAM on real routers (test/sim/mesh.ts): one Ipam per simulated peer on
// its router's gossip hub, and the checks every IPAM simulation ends with.

import { IpamConfig, parseIpamConfig } from '../../ipam/config';
import { Ipam } from '../../ipam/ipam';
import type { IpamStore } from '../../ipam/persistence';
import { silentLogger } from '../../common/logger';
import { SeededRng } from '../../common/rng';
import type { SimMesh, SimPeer } from './mesh';

export interface IpamPeerOptions {
  range?: string;
  init?: string;
  /** The whole configuration (e.g. as `weave launch` derives it); overrides range and init. */
  config?: IpamConfig;
  store?: IpamStore | null;
  requestTimeoutMs?: number;
}

export function attachIpam(mesh: SimMesh, p: SimPeer, opts: IpamPeerOptions, seed = 1): Ipam {
  return new Ipam(
    { hub: p.router.gossip, clock: mesh.clock, rng: new SeededRng(seed * 7919 + p.index), logger: silentLogger, store: opts.store ?? null },
    {
      config: opts.config ?? parseIpamConfig({ range: opts.range, init: opts.init, initialPeerCount: 1 }),
      timings: { requestTimeoutMs: opts.requestTimeoutMs ?? 600_000 },
    },
  );
}

/** Runs the mesh until every promise has settled; returns the outcomes in order. */
export async function settleAll<T>(mesh: SimMesh, promises: Promise<T>[], maxMs: number, stepMs = 200): Promise<PromiseSettledResult<T>[]> {
  let left = promises.length;
  for (const p of promises) p.then(() => { left--; }, () => { left--; });
  const start = mesh.clock.now();
  await flush();
  while (left > 0) {
    if (mesh.clock.now() - start > maxMs) throw new Error(`${left} of ${promises.length} requests still waiting after ${maxMs} simulated ms`);
    mesh.net.run(stepMs);
    await flush();
  }
  return Promise.allSettled(promises);
}

export function flush(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

/** Every address held anywhere, with who holds it; duplicates listed. */
export function duplicates(ipams: Ipam[]): string[] {
  const seen = new Map<string, string>();
  const dups: string[] = [];
  ipams.forEach((ipam, i) => {
    for (const a of ipam.status().allocations) {
      const ip = a.address.split('/')[0]!;
      const prev = seen.get(ip);
      if (prev !== undefined) dups.push(`${ip} on ${prev} and peer ${i}/${a.container}`);
      else seen.set(ip, `peer ${i}/${a.container}`);
    }
  });
  return dups;
}

/** Every address a peer holds lies in space that peer owns in its own ring. */
export function allocationsOutsideOwnSpace(ipams: Ipam[]): string[] {
  const out: string[] = [];
  ipams.forEach((ipam, i) => {
    const st = ipam.status();
    const mine = st.peers.find((p) => p.self);
    const ranges = (mine?.ranges ?? []).map((r) => r.split('-').map(ipToNumber) as [number, number]);
    for (const a of st.allocations) {
      const n = ipToNumber(a.address.split('/')[0]!);
      if (!ranges.some(([lo, hi]) => n >= lo && n <= hi)) out.push(`peer ${i}: ${a.address} (${a.container})`);
    }
  });
  return out;
}

/** The ring as each peer sees it, as comparable text. */
export function ringDigest(ipam: Ipam): string {
  const st = ipam.status();
  return `${st.seed.join(',')}|${st.peers.map((p) => `${p.peer}:${p.ranges.join('+')}`).join(' ')}`;
}

export function ipToNumber(ip: string): number {
  return ip.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}
