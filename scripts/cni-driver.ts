// Runs a CNI plugin the way libcni does: the CNI_* variables in an
// environment of their own (no PATH beyond what the caller gives, as a
// runtime may pass), the network config on stdin, the result or error on
// stdout. Shared by test/e2e/cni-plugin.test.ts and scripts/bench-cni.ts;
// it times each call, since the bench reports those times.

import { spawn } from 'node:child_process';

export type CniCommandName = 'ADD' | 'DEL' | 'CHECK' | 'VERSION' | 'GC' | 'STATUS';

export interface CniInvocation {
  command: CniCommandName;
  containerId?: string;
  netns?: string;
  ifName?: string;
  args?: string;
  /** CNI_PATH; default the directory of the plugin. */
  path?: string;
  /** The config: an object is sent as JSON, a string or Buffer as is. */
  config: unknown;
  /** Extra variables, or overrides (undefined leaves one out). */
  env?: Record<string, string | undefined>;
}

export interface CniOutcome {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout parsed, when it is JSON. */
  json: Record<string, unknown> | null;
  wallMs: number;
}

export function runCniPlugin(plugin: string, inv: CniInvocation, timeoutMs = 60_000): Promise<CniOutcome> {
  const env: Record<string, string> = {};
  const vars: Record<string, string | undefined> = {
    CNI_COMMAND: inv.command,
    CNI_CONTAINERID: inv.containerId,
    CNI_NETNS: inv.netns,
    CNI_IFNAME: inv.ifName,
    CNI_ARGS: inv.args ?? '',
    CNI_PATH: inv.path ?? plugin.slice(0, plugin.lastIndexOf('/')),
    ...inv.env,
  };
  for (const [k, v] of Object.entries(vars)) if (v !== undefined) env[k] = v;
  const input = Buffer.isBuffer(inv.config) ? inv.config : Buffer.from(typeof inv.config === 'string' ? inv.config : JSON.stringify(inv.config));
  const started = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const child = spawn(plugin, [], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString('utf8'); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString('utf8'); });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      const wallMs = Number(process.hrtime.bigint() - started) / 1e6;
      let json: Record<string, unknown> | null = null;
      try {
        const v = JSON.parse(stdout) as unknown;
        if (typeof v === 'object' && v !== null && !Array.isArray(v)) json = v as Record<string, unknown>;
      } catch {
        json = null;
      }
      resolve({ code: code ?? -1, stdout, stderr, json, wallMs });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}
