// Setup shared by the TAP end-to-end tests: a TAP opened in the root namespace
// under a unique name and moved into a namespace of its own (removed at
// teardown, or by the next run's sweep if this one was killed), the addresses
// on either side of it, and small helpers to run commands and read link
// counters. Needs root.

import { execFile, execFileSync } from 'node:child_process';
import { TapDevice, type TapOpenOptions } from '../../router/overlay/tap-device';
import { processAlive as alive } from '../../common/process-alive';

const PREFIX = `wvt-tap-${process.pid}-`;
export const SUBNET = '10.213.0';
export const NS_IP = `${SUBNET}.1`;          // the namespace's end of the TAP
export const FAKE_IP = `${SUBNET}.2`;        // the host we play behind the TAP
export const SINK_IP = `${SUBNET}.3`;        // a static neighbour whose frames we only watch
export const FAKE_MAC = Buffer.from([0x02, 0x77, 0x76, 0x74, 0x00, 0x02]);
export const SINK_MAC = '02:77:76:74:00:03';

interface HasTeardown { teardown(fn: () => void): void }

export function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export function quiet(cmd: string, args: string[]): void {
  try { sh(cmd, args); } catch { /* already gone */ }
}

/** Async, so the event loop (and the TAP reader) keeps running meanwhile. */
export function run(cmd: string, args: string[], timeoutMs = 20000): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
      resolve({ code, out: stdout + stderr });
    });
  });
}


export function ipBytes(text: string): Buffer {
  return Buffer.from(text.split('.').map(Number));
}

export function linkStats(ns: string, dev: string): { rxPackets: number; mac: Buffer } {
  const [link] = JSON.parse(sh('ip', ['-n', ns, '-s', '-j', 'link', 'show', 'dev', dev])) as
    Array<{ address: string; stats64: { rx: { packets: number } } }>;
  if (link === undefined) throw new Error(`no link ${dev} in ${ns}`);
  return { rxPackets: link.stats64.rx.packets, mac: Buffer.from(link.address.split(':').map((h) => parseInt(h, 16))) };
}

/** Kills what runs inside the namespace (a deleted namespace lives on in its processes), then deletes it. */
function removeNamespace(ns: string): void {
  try {
    for (const pid of sh('ip', ['netns', 'pids', ns]).split('\n').filter((l) => /^\d+$/.test(l))) {
      try { process.kill(Number(pid), 'SIGKILL'); } catch { /* already gone */ }
    }
  } catch { /* no such namespace */ }
  quiet('ip', ['netns', 'del', ns]);
}


/**
 * Teardown does not run when the runner kills a timed-out test, so each TAP
 * test file first calls this to remove what an earlier, dead run of any of
 * them left: namespaces named wvt-tap-<pid>-N and root links
 * wvt<pid>{tN,p,cN} whose pid is gone.
 */
export function sweepStale(): void {
  for (const line of sh('ip', ['netns', 'list']).split('\n')) {
    const m = /^wvt-tap-(\d+)-\d+\b/.exec(line);
    if (m !== null && !alive(Number(m[1]))) removeNamespace(m[0]);
  }
  for (const line of sh('ip', ['-br', 'link']).split('\n')) {
    const m = /^(wvt(\d+)(?:t\d+|p|c\d))[\s@]/.exec(line);
    if (m !== null && m[1] !== undefined && !alive(Number(m[2]))) quiet('ip', ['link', 'del', m[1]]);
  }
}

let nsCounter = 0;

/** A namespace holding an up TAP with `address`/24 and a static neighbour SINK_IP; all removed at teardown. */
export function tapInNamespace(t: HasTeardown, opts: TapOpenOptions = {}, address = NS_IP): { tap: TapDevice; ns: string; tapMac: Buffer } {
  nsCounter++;
  const ns = `${PREFIX}${nsCounter}`;
  const name = `wvt${process.pid}t${nsCounter}`;
  sh('ip', ['netns', 'add', ns]);
  let tap: TapDevice | null = null;
  t.teardown(() => {
    tap?.close();
    removeNamespace(ns);
    quiet('ip', ['link', 'del', name]);
  });
  tap = TapDevice.open(name, opts);
  sh('ip', ['link', 'set', name, 'netns', ns]);
  sh('ip', ['netns', 'exec', ns, 'sysctl', '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1']);
  sh('ip', ['-n', ns, 'link', 'set', name, 'up']);
  sh('ip', ['-n', ns, 'addr', 'add', `${address}/24`, 'dev', name]);
  sh('ip', ['-n', ns, 'neigh', 'add', SINK_IP, 'lladdr', SINK_MAC, 'dev', name]);
  return { tap, ns, tapMac: linkStats(ns, name).mac };
}
