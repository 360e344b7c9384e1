// Strangers without the password against real routers on the in-memory
// network and a manual clock: idle connections, oversize announcements and a
// flood from one source cost bounded handshake slots, never the slots of
// established peers or our own dials, are cleared by the handshake deadline,
// and show up in status and health as pressure rather than as a list of
// failures. A peer with the wrong password reads as refused, with the reason.

import t from 'tap';
import { renderConnections, renderStatus } from '../../cli/render-status';
import { FAST_TIMINGS, MAX_CONTROL_MESSAGE_BYTES, MAX_HANDSHAKES_IN_PROGRESS, MAX_HANDSHAKES_PER_SOURCE } from '../../router/mesh/constants';
import { stretchPassword } from '../../router/mesh/password-key';
import { loadSodium } from '../../router/mesh/sodium';
import type { ByteStream } from '../../router/mesh/transport';
import type { MemoryNetwork } from './memory-network';
import { SIM_PORT, SimMesh, simHost, type SimPeer } from './mesh';

t.before(async () => { await loadSodium(); });

const PASSWORD = stretchPassword('the mesh password');

interface Stranger {
  stream: ByteStream | null;
  closed: boolean;
}

/** Opens a connection to peer `to` from `fromHost` that reads nothing and, unless `send` is given, says nothing. */
function stranger(net: MemoryNetwork, fromHost: string, to: SimPeer, send?: Uint8Array): Stranger {
  const s: Stranger = { stream: null, closed: false };
  net.transport(fromHost).dial(to.host, SIM_PORT, (err, stream) => {
    if (err || !stream) { s.closed = true; return; }
    s.stream = stream;
    stream.start({ onData: () => undefined, onClose: () => { s.closed = true; } });
    if (send) stream.write(send);
  });
  return s;
}

function attackerHost(i: number): string {
  return `10.200.0.${i}`;
}

function established(p: SimPeer): number {
  return p.router.status().connections.filter((c) => c.state === 'established').length;
}

t.test('idle strangers hold at most the handshake slots, never a peer\'s, and the deadline clears them', async (t) => {
  const mesh = new SimMesh({ passwordKey: PASSWORD });
  t.teardown(() => mesh.shutdown());
  const a = await mesh.addPeer([], 0, { connLimit: 3 });
  await mesh.addPeer([0]);
  mesh.net.run(1_000);
  t.equal(established(a), 1, 'a real peer is connected before the attack');

  // 20 sources x 5 connections: each source under its cap, together over the global one.
  const strangers: Stranger[] = [];
  for (let i = 0; i < 100; i++) strangers.push(stranger(mesh.net, attackerHost(i % 20), a));
  mesh.net.drain();
  const during = a.router.status();
  t.equal(during.handshakes?.inProgress, MAX_HANDSHAKES_IN_PROGRESS, 'handshakes in progress stop at the cap');
  t.equal(strangers.filter((s) => s.closed).length, 100 - MAX_HANDSHAKES_IN_PROGRESS, 'the oldest ones were dropped to make room');
  t.equal(during.handshakes?.evictedLastMinute, 100 - MAX_HANDSHAKES_IN_PROGRESS);
  t.ok(during.health.some((h) => h.code === 'handshake-pressure' && /64\/64 inbound handshakes in progress/.test(h.text)), 'health names the pressure');
  t.match(renderStatus(during), /Handshakes: 64\/64 in progress, 36 dropped in the last minute/);
  t.same(during.connections.filter((c) => c.state === 'failed'), [], 'strangers are counted, not listed one by one');

  // A second real peer dials in, and we dial a third: --conn-limit counts established peers only.
  await mesh.addPeer([0]);
  await mesh.addPeer([]);
  a.router.connect([`${simHost(3)}:${SIM_PORT}`], false);
  mesh.net.run(1_000);
  t.equal(established(a), 3, 'both new peers connected under pressure (inbound and our own outbound dial)');
  t.ok(strangers.filter((s) => !s.closed).length >= MAX_HANDSHAKES_IN_PROGRESS - 1, 'a real handshake took one slot at most, briefly');

  mesh.net.run(FAST_TIMINGS.handshakeTimeoutMs);
  t.equal(strangers.filter((s) => !s.closed).length, 0, 'the handshake deadline closed every idle stranger');
  const after = a.router.status();
  t.equal(after.handshakes?.inProgress, 0);
  t.equal(after.handshakes?.droppedLastMinute, 100);
  t.equal(established(a), 3, 'the established peers are untouched');
  t.equal(after.counters['handshakesDropped'], 100, 'the totals reach the metrics');
});

t.test('one source gets its own few slots and cannot take the others\'', async (t) => {
  const mesh = new SimMesh({ passwordKey: PASSWORD });
  t.teardown(() => mesh.shutdown());
  const a = await mesh.addPeer([]);
  const others = [1, 2, 3].map((i) => stranger(mesh.net, attackerHost(100 + i), a));
  const flood: Stranger[] = [];
  for (let i = 0; i < 50; i++) flood.push(stranger(mesh.net, attackerHost(1), a));
  mesh.net.drain();
  t.equal(a.router.status().handshakes?.inProgress, 3 + MAX_HANDSHAKES_PER_SOURCE);
  t.equal(flood.filter((s) => !s.closed).length, MAX_HANDSHAKES_PER_SOURCE, 'the flood keeps only its newest few');
  t.ok(others.every((s) => !s.closed), 'other sources keep theirs');
});

t.test('a stranger announcing a message near the old 8 MiB limit is dropped at its header', async (t) => {
  const mesh = new SimMesh({ passwordKey: PASSWORD });
  t.teardown(() => mesh.shutdown());
  const a = await mesh.addPeer([]);
  const announce = new Uint8Array(4 + 64 * 1024);
  new DataView(announce.buffer).setUint32(0, MAX_CONTROL_MESSAGE_BYTES - 16);
  const s = stranger(mesh.net, attackerHost(1), a, announce);
  mesh.net.drain();
  t.ok(s.closed, 'closed at once, without waiting for the 8 MiB');
  const status = a.router.status();
  t.equal(status.handshakes?.inProgress, 0);
  t.equal(status.handshakes?.droppedLastMinute, 1);
  t.same(status.connections.filter((c) => c.state === 'failed'), [], 'not listed');
});

t.test('a peer with the wrong password or none reads as refused, with the reason, not as unencrypted', async (t) => {
  const mesh = new SimMesh({ passwordKey: PASSWORD });
  t.teardown(() => mesh.shutdown());
  const a = await mesh.addPeer([]);
  await mesh.addPeer([0], 1, { passwordKey: stretchPassword('not the mesh password') });
  await mesh.addPeer([0], 2, { passwordKey: null });
  mesh.net.run(2_000);
  const status = a.router.status();
  const failures = status.connections.filter((c) => c.state === 'failed');
  const from = (i: number) => failures.find((c) => c.address.startsWith(`${simHost(i)}:`));
  t.equal(from(1)?.failure, 'password-mismatch');
  t.equal(from(2)?.failure, 'password-local-only');
  const text = renderConnections(status);
  t.match(text, new RegExp(`^<- ${simHost(1).replace(/\./g, '\\.')}:\\d+ +failed +refused: wrong password +\\S+ +.*password`, 'm'));
  t.match(text, /refused: peer has no password/);
  t.notMatch(text, /unencrypted/, 'no refused handshake is called unencrypted');
  t.match(renderConnections(mesh.peers[2]!.router.status()), /refused: we have no password/, 'the peer without one is told why too');
});
