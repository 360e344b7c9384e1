// The supervisor's decisions (cli/supervisor.ts RestartPolicy) and how the
// daemon reports them (cli/daemon-health.ts): a first router that fails before
// it was ever ready is not restarted (weave launch reports it); later
// abnormal exits are, with a delay doubling to the cap and starting over after
// a stable run; clean exits and stop requests end the supervisor.

import t from 'tap';
import { daemonHealth, supervisorInfoFromEnv } from '../../cli/daemon-health';
import {
  ENV_LAST_EXIT, ENV_RESTARTS, ENV_SUPERVISOR_PID, FIRST_RESTART_DELAY_MS, MAX_RESTART_DELAY_MS, RestartPolicy, STABLE_RUN_MS,
} from '../../cli/supervisor';

const KILLED = { code: null, signal: 'SIGKILL' as const };

t.test('restart policy', async (t) => {
  const early = new RestartPolicy();
  t.match(early.decide({ code: 1, signal: null }, 100, false), { kind: 'stop', exitCode: 1, why: /before it was ever ready/ });

  const p = new RestartPolicy();
  p.markReady();
  const delays: number[] = [];
  for (let i = 0; i < 9; i++) {
    const d = p.decide(KILLED, 1_000, false);
    if (d.kind !== 'restart') throw new Error('expected a restart');
    delays.push(d.delayMs);
  }
  t.same(delays.slice(0, 4), [1_000, 2_000, 4_000, 8_000].map((x) => (x / 1_000) * FIRST_RESTART_DELAY_MS));
  t.equal(Math.max(...delays), MAX_RESTART_DELAY_MS, 'capped');
  t.same(p.decide({ code: 3, signal: null }, STABLE_RUN_MS, false), { kind: 'restart', delayMs: FIRST_RESTART_DELAY_MS }, 'a stable run starts the backoff over');
  t.match(p.decide({ code: 0, signal: null }, 5, false), { kind: 'stop', exitCode: 0 }, 'a clean exit (weave stop) ends it');
  t.match(p.decide(KILLED, 5, true), { kind: 'stop', exitCode: 0 }, 'so does a stop request, however the router ended');
});

t.test('the daemon reads what the supervisor tells it and shows it', async (t) => {
  t.equal(supervisorInfoFromEnv({}), null, 'no supervisor: weave router by hand');
  t.equal(supervisorInfoFromEnv({ [ENV_SUPERVISOR_PID]: 'x' }), null);
  const info = supervisorInfoFromEnv({ [ENV_SUPERVISOR_PID]: '4242', [ENV_RESTARTS]: '2', [ENV_LAST_EXIT]: 'killed by SIGKILL at T' });
  t.same(info, { pid: 4242, restarts: 2, lastExit: 'killed by SIGKILL at T' });
  t.same(supervisorInfoFromEnv({ [ENV_SUPERVISOR_PID]: '4242', [ENV_RESTARTS]: '-1' })?.restarts, 0, 'nonsense counts as none');
  const health = daemonHealth([{ file: '/d/peers.json', kind: 'ignored', text: 'ignored peers.json: not a list', sinceMs: 1 }], info);
  t.match(health, [
    { code: 'state-file', severity: 'warning', text: 'ignored peers.json: not a list' },
    { code: 'router-restarted', severity: 'warning', text: /restarted 2 times by its supervisor after a crash \(last: killed by SIGKILL at T\)/ },
  ]);
  t.same(daemonHealth([], { pid: 1, restarts: 0, lastExit: null }), [], 'no restart, nothing to say');
  t.same(daemonHealth([], null, { ports: 3, unguarded: 0, problem: 'port security not applied: nft failed' }),
    [{ code: 'port-security', severity: 'error', text: 'port security not applied: nft failed' }], 'port security that failed is an error');
  t.same(daemonHealth([], null, { ports: 3, unguarded: 1, problem: null }), [], 'port security that works says nothing');
});
