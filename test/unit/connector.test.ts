// The connector's retry policy on a manual clock: backoff grows and is capped,
// self and name clashes are not retried, user actions take effect at once.

import t from 'tap';
import { ManualClock } from '../../common/clock';
import { Connector } from '../../router/mesh/connector';
import { DEFAULT_TIMINGS } from '../../router/mesh/constants';
import { RouterError } from '../../router/mesh/errors';
import { silentLogger } from '../../common/logger';
import { SeededRng } from '../../common/rng';

function setup() {
  const clock = new ManualClock(0);
  const dials: { at: number; address: string }[] = [];
  const connected = new Set<string>();
  let allowed = true;
  const c = new Connector({ clock, rng: new SeededRng(3), logger: silentLogger }, DEFAULT_TIMINGS, {
    dial: (address) => dials.push({ at: clock.now(), address }),
    isConnected: (address) => connected.has(address),
    canConnect: () => allowed,
  });
  c.start();
  return { clock, dials, connected, c, setAllowed: (v: boolean) => { allowed = v; } };
}

t.test('failed attempts back off by about 1.5x with jitter, capped, for ever', async (t) => {
  const { clock, dials, c } = setup();
  c.addDirect(['10.0.0.2:6783'], false);
  clock.advance(0);
  t.equal(dials.length, 1, 'dials a new target at once');
  const gaps: number[] = [];
  for (let i = 0; i < 30; i++) {
    c.onDisconnected('10.0.0.2:6783', new RouterError('io', 'refused'));
    const before = dials.length;
    const from = clock.now();
    while (dials.length === before) clock.advance(100);
    gaps.push(clock.now() - from);
  }
  t.ok(gaps[0]! <= DEFAULT_TIMINGS.retryInitialMs * 1.5 + 100, `first retry soon (${gaps[0]} ms)`);
  t.ok(gaps[8]! > gaps[0]!, 'later retries wait longer');
  t.ok(gaps.every((g) => g <= DEFAULT_TIMINGS.retryMaxMs * 1.5 + 100), 'never beyond the cap (with jitter)');
  t.equal(c.status()[0]!.attempts, 30);
});

t.test('self-connection and name collision suspend the target; connect makes it due again', async (t) => {
  const { clock, dials, c } = setup();
  c.addDirect(['10.0.0.1:6783'], false);
  clock.advance(0);
  c.onDisconnected('10.0.0.1:6783', new RouterError('self-connection', 'ourselves'));
  clock.advance(DEFAULT_TIMINGS.retryMaxMs * 3);
  t.equal(dials.length, 1, 'not retried');
  t.equal(c.status()[0]!.state, 'suspended');
  c.addDirect(['10.0.0.1:6783'], false);
  clock.advance(0);
  t.equal(dials.length, 2, 'asked again by the user: dialed again');
});

t.test('connected targets are not dialed; replace and forget', async (t) => {
  const { clock, dials, connected, c } = setup();
  connected.add('10.0.0.3:6783');
  c.addDirect(['10.0.0.3:6783', '10.0.0.4:6783'], false);
  clock.advance(0);
  t.same(dials.map((d) => d.address), ['10.0.0.4:6783']);
  t.equal(c.status().find((s) => s.address === '10.0.0.3:6783')!.state, 'connected');
  c.addDirect(['10.0.0.5:6783'], true);
  t.same(c.directTargets(), ['10.0.0.5:6783']);
  t.same(c.forget(['10.0.0.5:6783', '10.0.0.9:6783']), ['10.0.0.5:6783']);
  t.same(c.directTargets(), []);
});

t.test('the connection limit holds dials back until there is room', async (t) => {
  const { clock, dials, c, setAllowed } = setup();
  setAllowed(false);
  c.addDirect(['10.0.0.6:6783'], false);
  clock.advance(DEFAULT_TIMINGS.connectorCheckMs * 2);
  t.equal(dials.length, 0);
  setAllowed(true);
  clock.advance(DEFAULT_TIMINGS.connectorCheckMs);
  t.equal(dials.length, 1);
});

t.test('discovered targets come and go with gossip; direct ones stay', async (t) => {
  const { clock, dials, c } = setup();
  c.addDirect(['10.0.0.2:6783'], false);
  c.setDiscovered(new Set(['10.0.0.7:6783']));
  clock.advance(0);
  t.same(dials.map((d) => d.address).sort(), ['10.0.0.2:6783', '10.0.0.7:6783']);
  c.onDisconnected('10.0.0.7:6783', new RouterError('io', 'x'));
  c.setDiscovered(new Set());
  t.same(c.status().map((s) => s.address), ['10.0.0.2:6783']);
});
