// Linux network namespace plumbing for the simulated networks: listing the
// namespaces that exist, finding and signalling the processes inside one,
// picking a per-run name prefix no existing namespace uses, deleting a
// namespace (and its /etc/netns entry), and asking whether a TCP port listens inside one. The synchronous
// steps are shared by the async and the exit-handler teardown in
// sim-network.ts; nothing here creates links.

import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { run, runSync } from './command';

/** Names of the namespaces `ip netns` knows about right now. */
export function listNamespaces(): string[] {
  const r = runSync(['ip', 'netns', 'list']);
  // Lines look like "name (id: 3)" or just "name".
  return r.stdout.split('\n').map((l) => l.trim().split(/\s+/)[0] ?? '').filter((n) => n !== '');
}

/** Process ids running inside namespace `ns` (none if it does not exist). */
export function pidsIn(ns: string): number[] {
  const r = runSync(['ip', 'netns', 'pids', ns]);
  return r.stdout.split(/\s+/).filter((s) => /^\d+$/.test(s)).map(Number);
}

/** Signals every pid, ignoring those already gone. */
export function killAll(pids: number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // Already gone: that is what we want.
    }
  }
}

/** Whether namespace `ns` still has its name under /var/run/netns. */
export function namespaceExists(ns: string): boolean {
  return existsSync(`/var/run/netns/${ns}`);
}

/** Deletes the name of namespace `ns`; true when `ip` succeeded. */
export function deleteNamespace(ns: string): boolean {
  // Deleting the name does not kill what runs inside: callers kill first.
  return runSync(['ip', 'netns', 'del', ns]).code === 0;
}

const NETNS_CONFIG_DIR = '/etc/netns';

/**
 * Removes /etc/netns/<name> of every namespace starting with `prefix`: the
 * per-namespace resolv.conf that weave DNS writes for netns: containers stays
 * after the namespace is gone unless someone detached first.
 */
export function removeNetnsConfig(prefix: string): void {
  let names: string[];
  try {
    names = readdirSync(NETNS_CONFIG_DIR);
  } catch {
    return;
  }
  for (const name of names) if (name.startsWith(prefix)) rmSync(join(NETNS_CONFIG_DIR, name), { recursive: true, force: true });
}

/** A `wvt<4 random hex>-` prefix that no existing namespace starts with. */
export function unusedPrefix(): string {
  const taken = listNamespaces();
  for (let i = 0; i < 100; i++) {
    const prefix = `wvt${randomBytes(2).toString('hex')}-`;
    if (!taken.some((n) => n.startsWith(prefix))) return prefix;
  }
  throw new Error('could not find an unused namespace prefix');
}


/**
 * Whether something listens on TCP `port` inside namespace `ns` (per `ss`), so a
 * test can wait for a server to be ready instead of sleeping.
 */
export async function tcpPortListening(ns: string, port: number): Promise<boolean> {
  const r = await run(['ip', 'netns', 'exec', ns, 'ss', '-Hltn', `sport = :${port}`], { timeoutMs: 5_000 });
  return r.code === 0 && r.stdout.trim() !== '';
}
