// scripts/cpu-cap: gives a set of processes a fixed share of one CPU through a
// cgroup's CPU bandwidth limit, for benchmarks that must compare two servers
// at the same CPU budget (bench-dns: with a whole core each, both servers
// outrun dnsperf and the ratio measures the client, not them).
//
// cgroup v2 (`cpu.max` under /sys/fs/cgroup, Debian 12's default) or, where
// the cpu controller is still mounted as v1 (this VM), `cpu.cfs_quota_us`
// under /sys/fs/cgroup/cpu. The period is short (10 ms) so a throttled server
// stalls for milliseconds, not for a 100 ms default period that dnsperf would
// see as bursts. Only for benchmarks: needs root.

import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const PERIOD_US = 10_000;

/** Caps not yet destroyed: removed at exit too, so Ctrl-C (SimNetwork's handler exits the process) leaves no cgroup. */
const live = new Set<CpuCap>();
let exitHandler = false;
const V2_ROOT = '/sys/fs/cgroup';
const V1_CPU_ROOT = '/sys/fs/cgroup/cpu';

export class CpuCap {
  private constructor(private readonly dir: string, private readonly parent: string, private readonly v2: boolean) {
    live.add(this);
    if (!exitHandler) {
      exitHandler = true;
      process.on('exit', () => { for (const c of live) c.destroy(); });
    }
  }

  /** A new cgroup `name`, unlimited until `limit`; throws when no cpu controller is available. */
  static create(name: string): CpuCap {
    if (existsSync(join(V2_ROOT, 'cgroup.controllers')) && readFileSync(join(V2_ROOT, 'cgroup.controllers'), 'utf8').split(/\s+/).includes('cpu')) {
      writeFileSync(join(V2_ROOT, 'cgroup.subtree_control'), '+cpu');
      const dir = join(V2_ROOT, name);
      mkdirSync(dir);
      return new CpuCap(dir, V2_ROOT, true);
    }
    if (existsSync(join(V1_CPU_ROOT, 'cpu.cfs_quota_us'))) {
      const dir = join(V1_CPU_ROOT, name);
      mkdirSync(dir);
      const cap = new CpuCap(dir, V1_CPU_ROOT, false);
      try {
        writeFileSync(join(dir, 'cpu.cfs_period_us'), String(PERIOD_US));
      } catch (err) {
        cap.destroy();
        throw err;
      }
      return cap;
    }
    throw new Error('no cgroup cpu controller (neither cgroup v2 with cpu nor a v1 cpu hierarchy)');
  }

  /** Limits the cgroup to `percent` of one CPU, or lifts the limit (null). */
  limit(percent: number | null): void {
    if (percent !== null && !(percent > 0 && percent <= 100)) throw new Error(`a CPU share is a percentage from 1 to 100, not ${percent}`);
    const quotaUs = percent === null ? null : Math.round((PERIOD_US * percent) / 100);
    if (this.v2) writeFileSync(join(this.dir, 'cpu.max'), `${quotaUs ?? 'max'} ${PERIOD_US}`);
    else writeFileSync(join(this.dir, 'cpu.cfs_quota_us'), String(quotaUs ?? -1));
  }

  /** Moves the process (all its threads, and children it starts later) into the cgroup. */
  add(pid: number): void {
    writeFileSync(join(this.dir, 'cgroup.procs'), String(pid));
  }

  /** Times the cgroup's processes were throttled so far (the cap really bit when this grows). */
  throttledPeriods(): number {
    const m = /nr_throttled (\d+)/.exec(readFileSync(join(this.dir, 'cpu.stat'), 'utf8'));
    return m === null ? 0 : Number(m[1]);
  }

  /** Moves whatever still runs in it back to the parent and removes the cgroup. */
  destroy(): void {
    live.delete(this);
    try {
      const pids = readFileSync(join(this.dir, 'cgroup.procs'), 'utf8').split('\n').filter((p) => p !== '');
      for (const pid of pids) {
        try {
          writeFileSync(join(this.parent, 'cgroup.procs'), pid);
        } catch {
          // Gone meanwhile.
        }
      }
      rmdirSync(this.dir);
    } catch {
      // Already removed.
    }
  }
}
