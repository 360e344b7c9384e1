// Where forwarded queries go: a fixed list (--dns-upstream, for tests and for
// hosts whose resolv.conf points at something unreachable from here), or the
// nameservers of the host's resolv.conf, looked at again when the file changes
// (mtime, size or inode, checked at most every RESOLV_CONF_CHECK_MS). Adapter:
// reads one file, synchronously and rarely.

import fs from 'node:fs';
import type { Logger } from '../common/logger';
import { MAX_RESOLV_CONF_BYTES, RESOLV_CONF_CHECK_MS } from './constants';
import type { Upstream } from './resolv-conf';
import { formatUpstream, parseResolvConf, upstreamsFrom } from './resolv-conf';

export interface UpstreamSource {
  /** The servers to try, in order; empty when there are none (queries then get SERVFAIL). */
  current(): Upstream[];
  /** For status: where the list comes from. */
  describe(): string;
}

export class FixedUpstreams implements UpstreamSource {
  constructor(private readonly list: readonly Upstream[]) {}

  current(): Upstream[] {
    return [...this.list];
  }

  describe(): string {
    return '--dns-upstream';
  }
}

export interface ResolvConfUpstreamsOptions {
  path: string;
  /** Our own listening addresses: forwarding there would loop. */
  isSelf: (u: Upstream) => boolean;
  checkMs?: number;
  now?: () => number;
}

export class ResolvConfUpstreams implements UpstreamSource {
  private list: Upstream[] = [];
  private stamp = '';
  private checkedAtMs = -Infinity;
  private readonly checkMs: number;
  private readonly now: () => number;

  constructor(private readonly logger: Logger, private readonly opts: ResolvConfUpstreamsOptions) {
    this.checkMs = opts.checkMs ?? RESOLV_CONF_CHECK_MS;
    this.now = opts.now ?? Date.now;
  }

  current(): Upstream[] {
    const now = this.now();
    if (now - this.checkedAtMs >= this.checkMs) {
      this.checkedAtMs = now;
      this.reload();
    }
    return [...this.list];
  }

  describe(): string {
    return this.opts.path;
  }

  private reload(): void {
    let stamp: string;
    try {
      const st = fs.statSync(this.opts.path);
      stamp = `${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch (err) {
      stamp = 'missing';
      if (this.stamp !== stamp) {
        this.logger.warn('cannot read the host resolv.conf; names outside the weave domain will fail', { file: this.opts.path, error: (err as Error).message });
        this.list = [];
        this.stamp = stamp;
      }
      return;
    }
    if (stamp === this.stamp) return;
    this.stamp = stamp;
    let text = '';
    try {
      const fd = fs.openSync(this.opts.path, 'r');
      try {
        const buf = Buffer.alloc(MAX_RESOLV_CONF_BYTES);
        const n = fs.readSync(fd, buf, 0, buf.length, 0);
        text = buf.subarray(0, n).toString('utf8');
      } finally {
        fs.closeSync(fd);
      }
    } catch (err) {
      this.logger.warn('cannot read the host resolv.conf', { file: this.opts.path, error: (err as Error).message });
      return;
    }
    const next = upstreamsFrom(parseResolvConf(text), this.opts.isSelf);
    const before = this.list.map(formatUpstream).join(',');
    const after = next.map(formatUpstream).join(',');
    this.list = next;
    if (before !== after) this.logger.info('dns upstream servers', { file: this.opts.path, upstreams: after === '' ? '(none)' : after });
  }
}
