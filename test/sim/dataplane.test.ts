// The data plane between real routers and overlays on the in-memory network:
// frames reach the right bridge, unicast once MACs are learnt, relay through
// intermediate peers, fall back to TCP when UDP is blocked and come back,
// and replayed or forged datagrams are dropped and counted.

import t from 'tap';
import { stretchPassword } from '../../router/mesh/password-key';
import { loadSodium } from '../../router/mesh/sodium';
import { SimMesh, SimPeer } from './mesh';

t.before(async () => { await loadSodium(); });

const BROADCAST = 'ff:ff:ff:ff:ff:ff';

function mac(i: number): string {
  return `0a:00:00:00:00:${i.toString(16).padStart(2, '0')}`;
}

/** An Ethernet frame with a payload that says who sent it to whom. */
function ethFrame(dst: string, src: string, note: string): Buffer {
  const hdr = Buffer.alloc(14);
  Buffer.from(dst.split(':').map((x) => parseInt(x, 16))).copy(hdr, 0);
  Buffer.from(src.split(':').map((x) => parseInt(x, 16))).copy(hdr, 6);
  hdr.writeUInt16BE(0x88b5, 12); // local experimental ethertype
  return Buffer.concat([hdr, Buffer.from(note)]);
}

function notes(p: SimPeer): string[] {
  return p.bridge!.delivered.map((f) => f.subarray(14).toString());
}

async function line(n: number, opts: { password?: boolean } = {}): Promise<SimMesh> {
  const mesh = new SimMesh({ dataPlane: true, discovery: false, passwordKey: opts.password === false ? null : stretchPassword('dp') });
  for (let i = 0; i < n; i++) await mesh.addPeer(i === 0 ? [] : [i - 1]);
  mesh.net.runUntil(() => mesh.converged(), 10_000);
  mesh.net.run(1_000); // let UDP probes report
  return mesh;
}

t.test('two peers: broadcast floods, the reply is unicast, MACs are learnt', async (t) => {
  const mesh = await line(2);
  t.teardown(() => mesh.shutdown());
  const [a, b] = mesh.peers as [SimPeer, SimPeer];
  a.bridge!.inject(ethFrame(BROADCAST, mac(1), 'who has'));
  mesh.net.drain();
  t.same(notes(b), ['who has']);
  b.bridge!.inject(ethFrame(mac(1), mac(2), 'is at'));
  mesh.net.drain();
  t.same(notes(a), ['is at']);
  t.equal(a.overlay!.counters['framesSentUdp'], 1, 'sent over UDP');
  t.ok(a.router.status().connections[0]!.dataPath === 'udp');
  t.same(a.overlay!.macTable().map((m) => [m.mac, m.peer]).sort(), [[mac(1), a.name], [mac(2), b.name]].sort());
});

t.test('a line of three: frames between the ends are relayed by the middle peer', async (t) => {
  const mesh = await line(3);
  t.teardown(() => mesh.shutdown());
  const [a, b, c] = mesh.peers as [SimPeer, SimPeer, SimPeer];
  a.bridge!.inject(ethFrame(BROADCAST, mac(1), 'arp from a'));
  mesh.net.drain();
  t.same(notes(b), ['arp from a'], 'b gets the broadcast once');
  t.same(notes(c), ['arp from a'], 'c gets the broadcast once, via b');
  c.bridge!.inject(ethFrame(mac(1), mac(3), 'reply from c'));
  mesh.net.drain();
  t.same(notes(a), ['reply from c'], 'unicast reply reaches a through b');
  t.same(notes(b), ['arp from a'], 'b does not deliver a unicast for a to its own bridge');
  t.equal(b.overlay!.counters['framesRelayed'], 2, 'b relayed both');
});

t.test('UDP blocked: frames travel over TCP, status says why, and UDP comes back', async (t) => {
  const mesh = await line(2);
  t.teardown(() => mesh.shutdown());
  const [a, b] = mesh.peers as [SimPeer, SimPeer];
  mesh.net.blockUdp(a.host, b.host);
  mesh.net.run(3_000);
  const conn = a.router.status().connections[0]!;
  t.equal(conn.dataPath, 'tcp');
  t.match(conn.dataPathInfo!, /UDP/);
  a.bridge!.inject(ethFrame(BROADCAST, mac(1), 'over tcp'));
  mesh.net.drain();
  t.same(notes(b), ['over tcp']);
  t.equal(a.overlay!.counters['framesSentTcp'], 1);
  mesh.net.blockUdp(a.host, b.host, false);
  mesh.net.run(2_000);
  t.equal(a.router.status().connections[0]!.dataPath, 'udp', 'back on UDP once probes get through');
  a.bridge!.inject(ethFrame(BROADCAST, mac(1), 'over udp again'));
  mesh.net.drain();
  t.same(notes(b), ['over tcp', 'over udp again']);
});

t.test('replayed and forged datagrams are dropped and counted; plaintext meshes carry frames in clear', async (t) => {
  const mesh = await line(2);
  t.teardown(() => mesh.shutdown());
  const [a, b] = mesh.peers as [SimPeer, SimPeer];
  mesh.net.captureUdp = true;
  a.bridge!.inject(ethFrame(BROADCAST, mac(1), 'secret payload'));
  mesh.net.drain();
  const frame = mesh.net.udpCapture.find((d) => d.bytes[1] === 1)!;
  t.ok(frame, 'captured the frame datagram');
  t.notOk(frame.bytes.includes(Buffer.from('secret payload')), 'no plaintext on the wire');
  mesh.net.injectDatagram(a.host, frame.to, frame.bytes);
  mesh.net.drain();
  t.equal(b.overlay!.drops.replay, 1, 'replay dropped');
  const forged = Buffer.from(frame.bytes);
  forged[forged.length - 20]! ^= 1;
  forged[15]! ^= 0x40; // a fresh counter, so only authentication can refuse it
  mesh.net.injectDatagram(a.host, frame.to, forged);
  mesh.net.drain();
  t.equal(b.overlay!.drops.auth, 1, 'forgery dropped');
  t.same(notes(b), ['secret payload'], 'delivered exactly once');

  const plain = await line(2, { password: false });
  t.teardown(() => plain.shutdown());
  plain.net.captureUdp = true;
  plain.peers[0]!.bridge!.inject(ethFrame(BROADCAST, mac(1), 'clear text'));
  plain.net.drain();
  t.ok(plain.net.udpCapture.some((d) => d.bytes.includes(Buffer.from('clear text'))), 'unencrypted mesh: payload visible');
  t.ok(plain.peers[0]!.router.status().health.some((h) => h.code === 'plaintext-mesh'));
});

t.test('broadcast reaches every peer of a random mesh exactly once', async (t) => {
  const mesh = new SimMesh({ dataPlane: true, discovery: false, seed: 11 });
  t.teardown(() => mesh.shutdown());
  const n = 12;
  for (let i = 0; i < n; i++) await mesh.addPeer(i === 0 ? [] : [Math.floor(i / 2), (i * 7) % i]);
  mesh.net.runUntil(() => mesh.converged(), 20_000);
  mesh.net.run(1_000);
  for (let origin = 0; origin < n; origin++) {
    mesh.peers[origin]!.bridge!.inject(ethFrame(BROADCAST, mac(100 + origin), `from ${origin}`));
    mesh.net.drain();
  }
  for (const p of mesh.peers) {
    const got = notes(p).sort();
    const expected = mesh.peers.filter((q) => q !== p).map((q) => `from ${q.index}`).sort();
    t.same(got, expected, `peer ${p.index} got each broadcast once`);
  }
});
