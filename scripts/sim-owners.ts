// Which run owns which simulated network, so that a run killed outright
// (SIGKILL, a runner's timeout, a crashed machine session) does not leave its
// namespaces, routers, /etc/netns entries, data directories and API sockets
// behind for ever: no exit handler runs then. Each network writes a marker
// /run/weave-sim/<prefix>.json naming its owner (pid and start time, so a
// reused pid is not mistaken for the owner) and its temporary directory; the
// next SimNetwork.create reaps every network whose owner is gone.

import { lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { apiSocketFor } from '../cli/api-socket';
import { processAlive } from '../common/process-alive';
import { runSync } from './command';
import { deleteNamespace, killAll, listNamespaces, pidsIn, removeNetnsConfig } from './netns';
import { sleepSync } from './wait';

const OWNERS_DIR = '/run/weave-sim';
/** A marker's name: the network's prefix (sim-network.ts PREFIX_RE) plus .json. */
const MARKER_RE = /^([a-zA-Z0-9][a-zA-Z0-9_.-]{0,30})\.json$/;

interface OwnerMarker {
  pid: number;
  startTime: string;
  rootDir: string;
}

/** Field 22 of /proc/PID/stat (start time in clock ticks since boot), or null when the process is gone. */
function startTimeOf(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

function markerPath(prefix: string): string {
  return join(OWNERS_DIR, `${prefix}.json`);
}

function readMarker(file: string): OwnerMarker | null {
  try {
    const m = JSON.parse(readFileSync(file, 'utf8')) as Partial<OwnerMarker>;
    if (typeof m.pid !== 'number' || typeof m.startTime !== 'string' || typeof m.rootDir !== 'string') return null;
    return { pid: m.pid, startTime: m.startTime, rootDir: m.rootDir };
  } catch {
    return null;
  }
}

/** Records that this process owns the network with `prefix` and temporary directory `rootDir`. */
export function claimNetwork(prefix: string, rootDir: string): void {
  mkdirSync(OWNERS_DIR, { recursive: true, mode: 0o700 });
  const marker: OwnerMarker = { pid: process.pid, startTime: startTimeOf(process.pid) ?? '', rootDir };
  writeFileSync(markerPath(prefix), JSON.stringify(marker));
}

export function releaseNetwork(prefix: string): void {
  rmSync(markerPath(prefix), { force: true });
}

function ownerAlive(m: OwnerMarker): boolean {
  return processAlive(m.pid) && startTimeOf(m.pid) === m.startTime;
}

/** Removes what a network left behind: processes, namespaces, /etc/netns entries, API sockets, its directory. */
function reap(prefix: string, m: OwnerMarker | null): void {
  const namespaces = listNamespaces().filter((n) => n.startsWith(prefix));
  for (const ns of namespaces) killAll(pidsIn(ns), 'SIGKILL');
  if (namespaces.length > 0) sleepSync(100);
  for (const ns of namespaces) deleteNamespace(ns);
  removeNetnsConfig(prefix);
  // Only a directory our own create() made: never a path a damaged marker names.
  if (m !== null && m.rootDir.startsWith(join(tmpdir(), `weave-sim-${prefix}`))) {
    let entries: string[] = [];
    try {
      entries = readdirSync(m.rootDir);
    } catch {
      // Already gone.
    }
    for (const e of entries) {
      const sock = apiSocketFor(join(m.rootDir, e));
      try {
        if (lstatSync(sock).isSocket()) rmSync(sock);
      } catch {
        // No socket for this entry.
      }
    }
    // A test may have mounted something there (a tiny tmpfs as a full disk).
    for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
      const mountPoint = line.split(' ')[1];
      if (mountPoint !== undefined && mountPoint.startsWith(`${m.rootDir}/`)) runSync(['umount', '-l', mountPoint]);
    }
    try {
      rmSync(m.rootDir, { recursive: true, force: true });
    } catch (e) {
      process.stderr.write(`netns: could not remove ${m.rootDir}: ${e instanceof Error ? e.message : String(e)}\n`);
    }
  }
  releaseNetwork(prefix);
}

/** Reaps every network whose owning run has ended without destroying it; returns their prefixes. */
export function reapAbandonedNetworks(): string[] {
  let files: string[];
  try {
    files = readdirSync(OWNERS_DIR);
  } catch {
    return [];
  }
  const reaped: string[] = [];
  for (const file of files) {
    const prefix = MARKER_RE.exec(file)?.[1];
    if (prefix === undefined) continue;
    const marker = readMarker(join(OWNERS_DIR, file));
    if (marker !== null && ownerAlive(marker)) continue;
    reap(prefix, marker);
    reaped.push(prefix);
  }
  return reaped;
}
