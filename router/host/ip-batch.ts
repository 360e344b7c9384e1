// Many `ip` commands in one process: `ip -batch -` with one command per line
// on stdin (iproute2 reads it with fgets, so the runner's stdin pipe works),
// so that attaching a container costs a few processes instead of one per step
// (issue 14). With `force`, every line runs and each failure is reported;
// without, the batch stops at the first. iproute2 reports a failed line as
// its error message followed by "Command failed -:N"; parseBatchFailures turns
// that into line -> message. Lines are built from validated names and
// addresses only (no user text), one command per line.

import type { CommandRunner, RunResult } from './command-runner';

export interface BatchResult extends RunResult {
  /** 1-based line number -> what ip said about it. */
  failures: Map<number, string>;
}

/** Failed lines and their messages, from ip's stderr. */
export function parseBatchFailures(stderr: string): Map<number, string> {
  const failures = new Map<number, string>();
  let said: string[] = [];
  for (const line of stderr.split('\n')) {
    const m = /^Command failed (?:-|\S+):(\d+)\s*$/.exec(line);
    if (m !== null) {
      failures.set(Number(m[1]), said.join('; '));
      said = [];
    } else if (line.trim() !== '') {
      said.push(line.trim());
    }
  }
  return failures;
}

/**
 * Runs `lines` as one batch: `ip [-force] -batch -`, inside `netnsPath` via
 * nsenter when given. Never rejects for a failed line; the caller reads
 * `failures` (a batch that failed without naming a line gets line 0).
 */
export async function runIpBatch(runner: CommandRunner, lines: readonly string[], opts: { netnsPath?: string; force?: boolean } = {}): Promise<BatchResult> {
  for (const l of lines) if (l.includes('\n')) throw new Error(`ip batch line with a newline: ${JSON.stringify(l)}`);
  const ipArgs = [...(opts.force === true ? ['-force'] : []), '-batch', '-'];
  const [cmd, args] = opts.netnsPath === undefined ? ['ip', ipArgs] : ['nsenter', [`--net=${opts.netnsPath}`, 'ip', ...ipArgs]];
  const r = await runner.run(cmd, args, { input: `${lines.join('\n')}\n`, allowFail: true });
  const failures = parseBatchFailures(r.stderr);
  if (r.code !== 0 && failures.size === 0) failures.set(0, (r.stderr.trim() || r.stdout.trim() || `exit ${r.code}`));
  return { ...r, failures };
}
