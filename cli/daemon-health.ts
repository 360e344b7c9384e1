// What the daemon adds to the router's status about itself: state files it
// ignored or cannot write yet (common/state-files.ts), port security it could
// not apply (router/host/port-security.ts) and, under the
// supervisor (cli/supervisor.ts), how often the router was restarted after a
// crash and how the last one ended. All become health warnings, so
// `weave status`, the status port and the metrics show them like the router's
// own; the restart count is also a field (`supervisor`) of the JSON status, as
// port security's state is (`portSecurity`).

import type { StateFileProblem } from '../common/state-files';
import type { RouterControl } from '../router/api/control';
import type { HealthWarning, RouterStatus } from '../router/mesh/status';
import type { PortGuardStatus } from '../router/host/port-security';
import { ENV_LAST_EXIT, ENV_RESTARTS, ENV_SUPERVISOR_PID } from './supervisor';

export interface SupervisorInfo {
  pid: number;
  /** Restarts after an abnormal exit since `weave launch`. */
  restarts: number;
  /** e.g. "killed by SIGKILL at 2024-...Z"; null before the first restart. */
  lastExit: string | null;
}

/** `portSecurity`: ports guarded and any problem (router/host/port-security.ts); null with --no-port-security. */
export type DaemonStatus = RouterStatus & { supervisor: SupervisorInfo | null; portSecurity: PortGuardStatus | null };

/** From the environment the supervisor gave us; null when we run without one (`weave router` by hand). */
export function supervisorInfoFromEnv(env: NodeJS.ProcessEnv): SupervisorInfo | null {
  const pid = Number(env[ENV_SUPERVISOR_PID]);
  if (!Number.isSafeInteger(pid) || pid <= 1) return null;
  const restarts = Number(env[ENV_RESTARTS] ?? '0');
  const lastExit = env[ENV_LAST_EXIT];
  return {
    pid,
    restarts: Number.isSafeInteger(restarts) && restarts >= 0 ? restarts : 0,
    lastExit: lastExit !== undefined && lastExit !== '' ? lastExit.slice(0, 200) : null,
  };
}

export function daemonHealth(problems: readonly StateFileProblem[], supervisor: SupervisorInfo | null, portSecurity: PortGuardStatus | null = null): HealthWarning[] {
  const out: HealthWarning[] = problems.map((p) => ({
    code: 'state-file',
    severity: p.kind === 'write' ? 'error' : 'warning',
    text: p.text,
  }));
  if (portSecurity !== null && portSecurity.problem !== null) out.push({ code: 'port-security', severity: 'error', text: portSecurity.problem });
  if (supervisor !== null && supervisor.restarts > 0) {
    out.push({
      code: 'router-restarted',
      severity: 'warning',
      text: `the router was restarted ${supervisor.restarts} time${supervisor.restarts === 1 ? '' : 's'} by its supervisor after a crash` +
        `${supervisor.lastExit !== null ? ` (last: ${supervisor.lastExit})` : ''}; see weave.log`,
    });
  }
  return out;
}

/** The router's control with the daemon's own health added to every status. */
export function withDaemonHealth(control: RouterControl, extra: () => { problems: readonly StateFileProblem[]; supervisor: SupervisorInfo | null; portSecurity: PortGuardStatus | null }): RouterControl & { status(): DaemonStatus } {
  return {
    status: (): DaemonStatus => {
      const s = control.status();
      const { problems, supervisor, portSecurity } = extra();
      return { ...s, health: [...s.health, ...daemonHealth(problems, supervisor, portSecurity)], supervisor, portSecurity };
    },
    connect: (addresses, replace) => control.connect(addresses, replace),
    forget: (addresses) => control.forget(addresses),
    stop: () => control.stop(),
  };
}
