// The host side of the overlay DNS address: the link-local address on the
// weave bridge, and the policy route that sends replies from it back out of
// the bridge. Adapter over `ip`; commands come in through RunCommand so tests
// can script them.
//
// Why the policy route: containers' addresses (10.32.0.0/12 or whatever was
// attached) are not routed on the host; replies from 169.254.x.y to them would
// follow the host's default route. A rule "from 169.254.x.y lookup TABLE" with
// "default dev weave" in TABLE sends exactly the packets sourced from our
// address onto the bridge, and nothing else on the host changes.
//
// It removes only what it added: the address, the rule (by its preference and
// selector) and the one table. A leftover from a crashed daemon is replaced.

import type { Logger } from '../common/logger';
import { DnsError } from './errors';

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command without a shell; resolves with its exit code (no throw on failure). */
export type RunCommand = (cmd: string, args: string[]) => Promise<CommandResult>;

/** Routing table and rule preference for replies from the DNS address ("we" = 0x7765). */
export const DNS_ROUTE_TABLE = 30565;
export const DNS_RULE_PREF = 30565;

export interface HostSetupOptions {
  bridge: string;
  address: string;
  table?: number;
  pref?: number;
}

export class HostDnsAddress {
  private readonly table: number;
  private readonly pref: number;
  private installed = false;

  constructor(private readonly run: RunCommand, private readonly logger: Logger, private readonly opts: HostSetupOptions) {
    this.table = opts.table ?? DNS_ROUTE_TABLE;
    this.pref = opts.pref ?? DNS_RULE_PREF;
  }

  async install(): Promise<void> {
    const { bridge, address } = this.opts;
    await this.must('ip', ['addr', 'replace', `${address}/32`, 'dev', bridge, 'scope', 'link']);
    this.installed = true;
    await this.must('ip', ['route', 'replace', 'default', 'dev', bridge, 'table', String(this.table)]);
    // Stale rules of ours (a crashed daemon) first; "del" fails once none is left.
    for (let i = 0; i < 16; i++) {
      const r = await this.run('ip', ['rule', 'del', 'pref', String(this.pref)]);
      if (r.code !== 0) break;
    }
    await this.must('ip', ['rule', 'add', 'pref', String(this.pref), 'from', `${address}/32`, 'lookup', String(this.table)]);
  }

  async remove(): Promise<void> {
    if (!this.installed) return;
    this.installed = false;
    const { bridge, address } = this.opts;
    const steps: [string, string[]][] = [
      ['ip', ['rule', 'del', 'pref', String(this.pref), 'from', `${address}/32`, 'lookup', String(this.table)]],
      ['ip', ['route', 'flush', 'table', String(this.table)]],
      ['ip', ['addr', 'del', `${address}/32`, 'dev', bridge]],
    ];
    for (const [cmd, args] of steps) {
      const r = await this.run(cmd, args);
      if (r.code !== 0 && !/No such|Cannot assign|does not exist|not found/i.test(r.stderr)) {
        this.logger.warn('cannot undo a DNS host setting', { command: `${cmd} ${args.join(' ')}`, error: r.stderr.trim() });
      }
    }
  }

  private async must(cmd: string, args: string[]): Promise<void> {
    const r = await this.run(cmd, args);
    if (r.code !== 0) throw DnsError.io(`${cmd} ${args.join(' ')} failed (exit ${r.code}): ${r.stderr.trim()}`);
  }
}
