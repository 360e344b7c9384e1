// Key rotation and password rolls between real routers and overlays on the
// in-memory network and a ManualClock: frames keep flowing, over UDP and over
// the TCP fallback, while every connection moves through many key epochs; and
// a mesh rolls its password one peer at a time without losing a connection.

import t from 'tap';
import type { RekeyOptions } from '../../router/mesh/key-schedule';
import { stretchPassword } from '../../router/mesh/password-key';
import { loadSodium } from '../../router/mesh/sodium';
import { SimMesh, SimPeer } from './mesh';

t.before(async () => { await loadSodium(); });

const FAST_REKEY: RekeyOptions = { intervalMs: 2_000, counterLimit: 2 ** 40, overlapMs: 500, timeoutMs: 5_000 };

function mac(i: number): Buffer {
  return Buffer.from([0x0a, 0, 0, 0, 0, i]);
}

function frame(dst: Buffer, src: Buffer, note: string): Buffer {
  const hdr = Buffer.alloc(14);
  dst.copy(hdr, 0);
  src.copy(hdr, 6);
  hdr.writeUInt16BE(0x88b5, 12);
  return Buffer.concat([hdr, Buffer.from(note)]);
}

/** Frames both ways between the ends of the line every `everyMs` for `forMs`; returns [sent, delivered]. */
function traffic(mesh: SimMesh, a: SimPeer, d: SimPeer, everyMs: number, forMs: number): [number, number] {
  const before = a.bridge!.delivered.length + d.bridge!.delivered.length;
  let sent = 0;
  for (let at = 0; at < forMs; at += everyMs) {
    a.bridge!.inject(frame(mac(4), mac(1), `a${at}`));
    d.bridge!.inject(frame(mac(1), mac(4), `d${at}`));
    sent += 2;
    mesh.net.run(everyMs);
  }
  mesh.net.drain();
  return [sent, a.bridge!.delivered.length + d.bridge!.delivered.length - before];
}

function epochs(p: SimPeer): number[] {
  return p.router.status().connections.filter((c) => c.state === 'established').map((c) => c.keyEpoch ?? -1);
}

function cryptoDrops(mesh: SimMesh): number {
  return mesh.alive().reduce((n, p) => n + (p.overlay!.drops.auth + p.overlay!.drops.replay), 0);
}

async function line(n: number, rekey: RekeyOptions): Promise<SimMesh> {
  const mesh = new SimMesh({ dataPlane: true, discovery: false, passwordKey: stretchPassword('rekey sim'), rekey });
  for (let i = 0; i < n; i++) await mesh.addPeer(i === 0 ? [] : [i - 1]);
  mesh.net.runUntil(() => mesh.converged(), 10_000);
  mesh.net.run(1_000);
  return mesh;
}

t.test('a line of four under traffic for 30 s with a 2 s rekey interval: no frame lost, every link past epoch 10', async (t) => {
  const mesh = await line(4, FAST_REKEY);
  t.teardown(() => mesh.shutdown());
  const [a, , , d] = mesh.peers as [SimPeer, SimPeer, SimPeer, SimPeer];
  traffic(mesh, a, d, 100, 200); // learn MACs
  const [sent, delivered] = traffic(mesh, a, d, 20, 30_000);
  t.equal(delivered, sent, `${sent} frames sent through two relays, all delivered`);
  for (const p of mesh.peers) t.ok(epochs(p).every((e) => e >= 10), `${p.name}: key epochs ${epochs(p).join(', ')}`);
  t.equal(cryptoDrops(mesh), 0, 'no datagram failed authentication or the replay check');
  t.ok(mesh.peers.every((p) => p.router.status().connections.every((c) => c.state === 'established' && c.dataPath === 'udp')), 'all links stayed up on UDP');
  t.ok(mesh.peers.every((p) => p.router.status().connections.every((c) => (c.keyAgeMs ?? Infinity) <= FAST_REKEY.intervalMs + 1_000)), 'no key is older than the interval (and a tick)');
});

t.test('over the TCP fallback too, and a low counter threshold rekeys before the interval', async (t) => {
  const mesh = await line(2, { ...FAST_REKEY, intervalMs: 60_000, counterLimit: 300 });
  t.teardown(() => mesh.shutdown());
  const [a, b] = mesh.peers as [SimPeer, SimPeer];
  traffic(mesh, a, b, 100, 200);
  const [sentUdp, gotUdp] = traffic(mesh, a, b, 5, 5_000);
  t.equal(gotUdp, sentUdp, 'UDP: all delivered');
  const afterUdp = Math.min(...epochs(a));
  t.ok(afterUdp >= 2, `the counter threshold moved the keys on within 5 s of a 60 s interval (epoch ${afterUdp})`);
  mesh.net.blockUdp(a.host, b.host);
  mesh.net.run(3_000);
  t.equal(a.router.status().connections[0]!.dataPath, 'tcp');
  const [sentTcp, gotTcp] = traffic(mesh, a, b, 5, 5_000);
  t.equal(gotTcp, sentTcp, 'TCP fallback: all delivered');
  t.ok(Math.min(...epochs(a)) > afterUdp, 'control counters rekey the TCP path as well');
  t.equal(cryptoDrops(mesh), 0);
});

t.test('a password roll across three peers, one restart at a time, never splits the mesh', async (t) => {
  const OLD = stretchPassword('old password');
  const NEW = stretchPassword('new password');
  const mesh = new SimMesh({ dataPlane: false, discovery: false, passwordKey: OLD, rekey: FAST_REKEY });
  t.teardown(() => mesh.shutdown());
  const full = [[1, 2], [0, 2], [0, 1]];
  for (let i = 0; i < 3; i++) await mesh.addPeer(full[i]!);
  mesh.net.runUntil(() => mesh.converged() && mesh.alive().every((p) => epochs(p).length === 2), 20_000);
  const oldUsers = (p: SimPeer): number => p.router.status().connections.filter((c) => c.oldPassword).length;

  for (let i = 0; i < 3; i++) {
    mesh.stopPeer(i);
    await mesh.addPeer(full[i]!, i, { passwordKey: NEW, oldPasswordKey: OLD });
    mesh.net.runUntil(() => mesh.converged() && mesh.alive().every((p) => epochs(p).length === 2), 20_000);
    const rolled = mesh.peers[i]!;
    t.ok(rolled.router.status().passwordRoll, `peer ${i}: rolling`);
    t.equal(oldUsers(rolled), 2 - i, `peer ${i} relaunched with NEW + OLD: ${2 - i} neighbours still on the old password`);
  }
  t.ok(mesh.peers.every((p) => oldUsers(p) === 0), 'all on the new password now');
  for (let i = 0; i < 3; i++) {
    mesh.stopPeer(i);
    await mesh.addPeer(full[i]!, i, { passwordKey: NEW });
    mesh.net.runUntil(() => mesh.converged() && mesh.alive().every((p) => epochs(p).length === 2), 20_000);
  }
  t.ok(mesh.peers.every((p) => !p.router.status().passwordRoll && epochs(p).length === 2), 'old password dropped everywhere, every link up');

  mesh.stopPeer(2);
  await mesh.addPeer(full[2]!, 2, { passwordKey: OLD });
  mesh.net.run(3_000);
  t.same(epochs(mesh.peers[2]!), [], 'a peer still on the old password alone is refused once the roll is over');
  t.ok(mesh.peers[0]!.router.status().connections.some((c) => c.state === 'failed' && c.failure === 'password-mismatch'), 'by name');
});
