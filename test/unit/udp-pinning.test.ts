// Who may move a neighbour's UDP address: the pure rules of UdpEndpoint, then
// an Overlay fed spoofed datagrams. Without a password a datagram naming the
// neighbour from anywhere but its pinned address is dropped, never counts as
// hearing it, and earns only a challenge probe; the address moves only when
// the neighbour echoes that challenge over TCP (how a NAT'd peer gets onto
// UDP). With a password only a datagram that authenticates moves it.

import t from 'tap';
import { ManualClock } from '../../common/clock';
import { silentLogger } from '../../common/logger';
import type { OverlayNeighbour } from '../../router/mesh/data-plane';
import type { PeerName } from '../../router/mesh/peer-name';
import { decodeControlMessage } from '../../router/mesh/protocol';
import { SleeveKeyRing } from '../../router/mesh/sleeve-keys';
import { loadSodium } from '../../router/mesh/sodium';
import { frameAead } from '../../router/overlay/frame-aead';
import { FAST_OVERLAY_TIMINGS, Overlay } from '../../router/overlay/overlay';
import { DatagramPort, FramePort, STAGE_SLOT_BYTES } from '../../router/overlay/ports';
import {
  CHALLENGE_BYTES, INNER_HEADER_BYTES, peerNameBytes, SLEEVE_HEADER_BYTES, SLEEVE_TYPE_FRAME, SLEEVE_TYPE_PROBE,
  VNET_HDR_BYTES, writeInnerHeader,
} from '../../router/overlay/sleeve-codec';
import { SleeveSession } from '../../router/overlay/sleeve-session';
import { MAX_CHALLENGES_PER_TICK, UdpEndpoint } from '../../router/overlay/udp-endpoint';

t.before(async () => { await loadSodium(); });

const US = '02:00:00:00:00:0a' as PeerName;
const PEER = '02:00:00:00:00:0b' as PeerName;
const PEER_HOST = '10.9.0.2';
const ATTACKER = '10.9.0.66';
const PORT = 6783;
const fill = (b: Buffer): void => { for (let i = 0; i < b.length; i++) b[i] = (Math.random() * 256) | 0; };

t.test('UdpEndpoint without a password: pinned, challenged, moved only by an echo', async (t) => {
  const e = new UdpEndpoint(PEER_HOST, PORT, false, 1_000);
  t.equal(e.onDatagram(PEER_HOST, PORT), 'pinned');
  t.equal(e.onDatagram(ATTACKER, PORT), 'unexpected', 'another host naming the peer');
  t.equal(e.onDatagram(PEER_HOST, 40_000), 'unexpected', 'the peer\'s host, another port');
  t.same([e.host, e.port], [PEER_HOST, PORT], 'the address did not move');
  const n1 = e.challenge(ATTACKER, PORT, 0, fill);
  t.equal(n1?.length, CHALLENGE_BYTES);
  t.equal(e.challenge(ATTACKER, PORT, 0, fill), null, 'one challenge per source per interval');
  const nat = e.challenge(PEER_HOST, 40_000, 0, fill)!;
  for (let i = 2; i < MAX_CHALLENGES_PER_TICK; i++) t.ok(e.challenge(`10.9.1.${i}`, PORT, 0, fill));
  t.equal(e.challenge('10.9.2.1', PORT, 0, fill), null, 'the interval\'s budget is spent');
  t.equal(e.tick(), null, 'nothing heard, nothing to echo');
  t.ok(e.challenge('10.9.2.1', PORT, 10, fill), 'a new interval, a new budget');
  t.notOk(e.confirm(Buffer.alloc(CHALLENGE_BYTES), 20), 'a guessed echo moves nothing');
  t.notOk(e.confirm(nat.subarray(0, 4), 20), 'a short echo moves nothing');
  t.notOk(e.confirm(nat, 2_000), 'an echo past its time moves nothing');
  t.same([e.host, e.port], [PEER_HOST, PORT]);
  t.ok(e.confirm(nat, 500), 'the echo of the challenge sent to the NAT port');
  t.same([e.host, e.port], [PEER_HOST, 40_000], 'moved to where that challenge went');
  t.notOk(e.confirm(n1!, 600), 'confirming clears the other challenges');
  t.same([e.host, e.port], [PEER_HOST, 40_000]);
});

t.test('UdpEndpoint keeps a bounded number of challenges: spoofed sources over many intervals push out the oldest', async (t) => {
  const e = new UdpEndpoint(PEER_HOST, PORT, false, 60_000);
  const first = e.challenge(ATTACKER, PORT, 0, fill)!;
  // Every interval a new budget of spoofed sources; what stays is the most recent few, not all of them.
  const all: Buffer[] = [first];
  for (let tick = 0; tick < 100; tick++) {
    e.tick();
    for (let i = 0; i < MAX_CHALLENGES_PER_TICK; i++) all.push(e.challenge(`10.9.${tick}.${i}`, PORT, tick, fill)!);
  }
  t.notOk(e.confirm(first, 200), 'the oldest challenge was let go');
  t.notOk(e.confirm(all[all.length - 20]!, 200), 'so was one from five intervals ago');
  t.ok(e.confirm(all[all.length - 1]!, 200), 'the newest still counts');
});

t.test('UdpEndpoint echoes: the pinned source\'s challenge wins over spoofed ones', async (t) => {
  const e = new UdpEndpoint(PEER_HOST, PORT, false, 1_000);
  const real = Buffer.alloc(CHALLENGE_BYTES, 1);
  const spoof = Buffer.alloc(CHALLENGE_BYTES, 2);
  e.heardChallenge(spoof, false);
  e.heardChallenge(real, true);
  e.heardChallenge(spoof, false);
  t.same(e.tick(), real);
  t.equal(e.tick(), null, 'echoed once');
  e.heardChallenge(spoof, false);
  t.same(e.tick(), spoof, 'with nothing from the pinned address, the latest is echoed');
});

t.test('UdpEndpoint with a password: an authenticated source moves it, challenges are never used', async (t) => {
  const e = new UdpEndpoint(PEER_HOST, PORT, true, 1_000);
  t.equal(e.onDatagram(PEER_HOST, PORT), 'pinned');
  t.equal(e.onDatagram(PEER_HOST, 40_000), 'moved');
  t.same([e.host, e.port], [PEER_HOST, 40_000]);
  t.equal(e.challenge(ATTACKER, PORT, 0, fill), null);
  t.notOk(e.confirm(Buffer.alloc(CHALLENGE_BYTES), 0));
});

// ---- an Overlay with one neighbour, on fake ports ----

interface Sent { host: string; port: number; bytes: Buffer }

class FakeUdp implements DatagramPort {
  readonly sent: Sent[] = [];
  private readonly stage = Buffer.alloc(STAGE_SLOT_BYTES);
  onDatagram: ((buf: Buffer, off: number, len: number, host: string, port: number) => void) | null = null;
  start(onDatagram: (buf: Buffer, off: number, len: number, host: string, port: number) => void): void { this.onDatagram = onDatagram; }
  stageSlab(): Buffer { return this.stage; }
  stageOffset(): number { return 0; }
  commit(len: number, host: string, port: number): void { this.sent.push({ host, port, bytes: Buffer.from(this.stage.subarray(0, len)) }); }
  flush(): void {}
  close(): void {}
  deliver(bytes: Buffer, host: string, port: number): void { this.onDatagram!(Buffer.from(bytes), 0, bytes.length, host, port); }
  frames(): Sent[] { return this.sent.filter((s) => s.bytes[1] === SLEEVE_TYPE_FRAME); }
}

class FakeBridge implements FramePort {
  readonly written: Buffer[] = [];
  onFrame: ((buf: Buffer, off: number, len: number) => void) | null = null;
  start(onFrame: (buf: Buffer, off: number, len: number) => void): void { this.onFrame = onFrame; }
  write(buf: Buffer, off: number, len: number): void { this.written.push(Buffer.from(buf.subarray(off, off + len))); }
  close(): void {}
  /** A broadcast frame from a local container, with a plain vnet header. */
  inject(note: string): void {
    const f = Buffer.concat([Buffer.alloc(VNET_HDR_BYTES), Buffer.alloc(6, 0xff), Buffer.from([2, 0, 0, 0, 0, 1, 0x88, 0xb5]), Buffer.from(note)]);
    this.onFrame!(f, 0, f.length);
  }
}

const KEY_A = Buffer.alloc(32, 0xa1);
const KEY_B = Buffer.alloc(32, 0xb2);

function setup(password: boolean) {
  const clock = new ManualClock();
  const udp = new FakeUdp();
  const bridge = new FakeBridge();
  const control: Uint8Array[] = [];
  const overlay = new Overlay(
    { clock, logger: silentLogger, aead: frameAead(), bridge, udp },
    { localPeer: US, mtu: 1400, bridgeName: 'weave', timings: FAST_OVERLAY_TIMINGS },
  );
  overlay.start();
  overlay.setRoutes({ nextHop: () => PEER, broadcastChildren: (origin) => (origin === US ? [PEER] : []) });
  const n: OverlayNeighbour = {
    name: PEER, host: PEER_HOST, udpPort: PORT, keys: password ? new SleeveKeyRing(Buffer.from(KEY_A), Buffer.from(KEY_B)) : null, sendControl: (m) => control.push(m),
  };
  overlay.addNeighbour(n);
  // What the neighbour seals with: its send key is our receive key.
  const peerSession = new SleeveSession(frameAead(), password ? new SleeveKeyRing(Buffer.from(KEY_B), Buffer.from(KEY_A)) : null, peerNameBytes(PEER));
  const datagram = (type: number, body: Buffer): Buffer => {
    const buf = Buffer.alloc(SLEEVE_HEADER_BYTES + body.length + 16);
    body.copy(buf, SLEEVE_HEADER_BYTES);
    return buf.subarray(0, peerSession.seal(buf, 0, type, body.length));
  };
  const frame = (note: string): Buffer => {
    const inner = Buffer.alloc(INNER_HEADER_BYTES + VNET_HDR_BYTES + 14 + note.length);
    writeInnerHeader(inner, 0, peerNameBytes(PEER), Buffer.alloc(6, 0xff), 32);
    Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 2, 0x88, 0xb5]).copy(inner, INNER_HEADER_BYTES + VNET_HDR_BYTES);
    Buffer.from(note).copy(inner, INNER_HEADER_BYTES + VNET_HDR_BYTES + 14);
    return datagram(SLEEVE_TYPE_FRAME, inner);
  };
  const statuses = () => control.map((m) => decodeControlMessage(m)).filter((m) => m.type === 'udp-status');
  return { clock, udp, bridge, overlay, datagram, frame, statuses, control };
}

const address = (o: Overlay): string => o.linkStatus(PEER)!.udpAddress;

t.test('plaintext: spoofed datagrams naming the neighbour move nothing and deliver nothing', async (t) => {
  const s = setup(false);
  s.udp.deliver(s.datagram(SLEEVE_TYPE_PROBE, Buffer.alloc(0)), PEER_HOST, PORT);
  s.overlay.handleUdpStatus(PEER, { hearing: true });
  s.udp.deliver(s.frame('real'), PEER_HOST, PORT);
  t.equal(s.bridge.written.length, 1, 'a frame from the pinned address is delivered');
  s.udp.sent.length = 0;
  for (let i = 0; i < 50; i++) {
    s.udp.deliver(s.frame('spoofed'), ATTACKER, PORT);
    s.udp.deliver(s.datagram(SLEEVE_TYPE_PROBE, Buffer.alloc(0)), ATTACKER, 5000 + i);
  }
  t.equal(address(s.overlay), `${PEER_HOST}:${PORT}`, 'the address stays pinned');
  t.equal(s.bridge.written.length, 1, 'no spoofed frame reached the bridge');
  t.equal(s.overlay.drops.source, 100);
  const toAttacker = s.udp.sent.filter((d) => d.host === ATTACKER);
  t.equal(toAttacker.length, MAX_CHALLENGES_PER_TICK, 'a capped number of challenges went to the spoofed sources');
  t.ok(toAttacker.every((d) => d.bytes[1] === SLEEVE_TYPE_PROBE && d.bytes.length === SLEEVE_HEADER_BYTES + CHALLENGE_BYTES), 'challenges are bare probes');
  s.bridge.inject('ping');
  t.same(s.udp.frames().map((d) => `${d.host}:${d.port}`), [`${PEER_HOST}:${PORT}`], 'our frame goes to the real address');
  // A status report naming a challenge the attacker received but the peer never heard moves nothing either.
  s.clock.advance(FAST_OVERLAY_TIMINGS.probeIntervalMs);
  t.equal(address(s.overlay), `${PEER_HOST}:${PORT}`);
  t.equal(s.overlay.linkStatus(PEER)!.path, 'udp');
});

t.test('plaintext: spoofed datagrams do not count as hearing the neighbour', async (t) => {
  const s = setup(false);
  for (let i = 0; i < 10; i++) {
    s.udp.deliver(s.datagram(SLEEVE_TYPE_PROBE, Buffer.alloc(0)), ATTACKER, PORT);
    s.clock.advance(FAST_OVERLAY_TIMINGS.probeIntervalMs);
  }
  const last = s.statuses().at(-1)!;
  t.equal(last.type === 'udp-status' && last.hearing, false, 'we tell the neighbour we hear none of its probes');
});

t.test('plaintext behind NAT: the echo of a challenge over TCP moves the address', async (t) => {
  const s = setup(false);
  const natPort = 41_234;
  s.udp.deliver(s.datagram(SLEEVE_TYPE_PROBE, Buffer.alloc(0)), PEER_HOST, natPort);
  t.equal(address(s.overlay), `${PEER_HOST}:${PORT}`, 'not moved by the datagram itself');
  const challenge = s.udp.sent.find((d) => d.port === natPort)!;
  t.ok(challenge, 'challenged the NAT port');
  const nonce = challenge.bytes.subarray(SLEEVE_HEADER_BYTES, SLEEVE_HEADER_BYTES + CHALLENGE_BYTES);
  s.overlay.handleUdpStatus(PEER, { hearing: false, echo: Buffer.alloc(CHALLENGE_BYTES, 7) });
  t.equal(address(s.overlay), `${PEER_HOST}:${PORT}`, 'a wrong echo moves nothing');
  s.overlay.handleUdpStatus(PEER, { hearing: true, echo: nonce });
  t.equal(address(s.overlay), `${PEER_HOST}:${natPort}`, 'the echo moves it');
  s.udp.deliver(s.frame('via nat'), PEER_HOST, natPort);
  t.equal(s.bridge.written.length, 1, 'frames from the confirmed address are delivered');
  s.bridge.inject('reply');
  t.same(s.udp.frames().map((d) => d.port), [natPort]);
});

t.test('plaintext: a challenge we hear is echoed in our next UDP_STATUS', async (t) => {
  const s = setup(false);
  const nonce = Buffer.from('8 bytes!');
  s.udp.deliver(s.datagram(SLEEVE_TYPE_PROBE, nonce), PEER_HOST, PORT);
  s.clock.advance(FAST_OVERLAY_TIMINGS.probeIntervalMs);
  const st = s.statuses();
  t.equal(st.length, 1);
  t.same(st[0]!.type === 'udp-status' && st[0]!.echo ? Buffer.from(st[0]!.echo) : null, nonce);
  s.clock.advance(FAST_OVERLAY_TIMINGS.probeIntervalMs);
  t.equal(s.statuses()[1]!.type === 'udp-status' && s.statuses()[1]!.echo, null, 'echoed once');
});

t.test('password: only an authenticated datagram moves the address', async (t) => {
  const s = setup(true);
  const forged = s.frame('forged');
  forged[forged.length - 1]! ^= 1;
  s.udp.deliver(forged, ATTACKER, PORT);
  t.equal(s.overlay.drops.auth, 1);
  t.equal(address(s.overlay), `${PEER_HOST}:${PORT}`, 'a forgery moves nothing');
  // What worked before on a plaintext mesh: an unsealed datagram naming the peer.
  const plain = Buffer.alloc(64);
  new SleeveSession(frameAead(), null, peerNameBytes(PEER)).seal(plain, 0, SLEEVE_TYPE_PROBE, 0);
  s.udp.deliver(plain.subarray(0, SLEEVE_HEADER_BYTES), ATTACKER, PORT);
  t.equal(s.overlay.drops.auth, 2);
  t.equal(address(s.overlay), `${PEER_HOST}:${PORT}`);
  t.equal(s.udp.sent.filter((d) => d.host === ATTACKER).length, 0, 'no challenges with a password');
  s.udp.deliver(s.frame('roamed'), PEER_HOST, 40_000);
  t.equal(address(s.overlay), `${PEER_HOST}:40000`, 'an authenticated datagram moves it (NAT rebinding)');
  t.equal(s.bridge.written.length, 1);
});

t.test('invalid virtio_net_hdr from the wire: dropped and counted, never written to the TAP', async (t) => {
  const s = setup(false);
  const bad = s.frame('bad header');
  bad[SLEEVE_HEADER_BYTES + INNER_HEADER_BYTES + 1] = 5; // gso_type UDP_L4, not one we emit
  s.udp.deliver(bad, PEER_HOST, PORT);
  t.equal(s.bridge.written.length, 0);
  t.equal(s.overlay.drops.vnet, 1);
  t.equal(s.overlay.counters['frames_dropped{reason="vnet"}'], 1, 'a metric');
  const tcpBad = Buffer.from(bad.subarray(SLEEVE_HEADER_BYTES));
  s.overlay.handleTcpFrame(PEER, tcpBad);
  t.equal(s.overlay.drops.vnet, 2, 'the TCP fallback is checked too');
  s.udp.deliver(s.frame('good'), PEER_HOST, PORT);
  t.equal(s.bridge.written.length, 1);
});
