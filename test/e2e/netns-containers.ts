// Setup shared by end-to-end tests of real routers: a "container" that is a
// network namespace of the SimNetwork's prefix (removed with it), attached
// with `weave attach CIDR netns:NS`, and waiting until one pings another.
// Needs root.

import { run } from '../../scripts/command';
import type { SimHost } from '../../scripts/sim-host';
import { waitFor } from '../../scripts/wait';

/** Creates namespace `ns` (loopback up) and attaches it on `h` at `cidr`; the attach's exit code and stderr. */
export async function attachNetns(h: SimHost, ns: string, cidr: string): Promise<{ code: number; stderr: string }> {
  await run(['ip', 'netns', 'add', ns], { check: true });
  await run(['ip', '-n', ns, 'link', 'set', 'lo', 'up'], { check: true });
  const r = await h.weave(['attach', cidr, `netns:${ns}`]);
  return { code: r.code, stderr: r.stderr };
}

/** Resolves once three pings from `ns` to `ip` all answer (40 s at most); the error names `what` and ping's last output. */
export async function pingsFrom(ns: string, ip: string, what: string): Promise<void> {
  let last = '';
  await waitFor(async () => {
    const r = await run(['ip', 'netns', 'exec', ns, 'ping', '-c', '3', '-i', '0.2', '-W', '2', ip], { timeoutMs: 30_000 });
    last = r.stdout + r.stderr;
    return r.code === 0;
  }, { what: `${ns} pings ${ip} ${what}`, timeoutMs: 40_000, detail: () => last });
}
