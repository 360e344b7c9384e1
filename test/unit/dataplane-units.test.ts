// Data-path pieces on their own: the sleeve codec against hostile bytes, the
// two AEAD backends agreeing byte for byte, the MAC table's aging, and the
// forwarder's decisions against a table of cases.

import t from 'tap';
import { frameAead, nativeAead, wasmAead } from '../../router/overlay/frame-aead';
import { Forwarder, RouteView } from '../../router/overlay/forwarder';
import { formatMac, MacTable, readMac } from '../../router/overlay/mac-table';
import { MacMap } from '../../router/overlay/mac-map';
import type { PeerName } from '../../router/mesh/peer-name';
import { SeededRng } from '../../common/rng';
import { readInnerHeader, readSleeveHeader, SLEEVE_TYPE_FRAME, writeSleeveHeader, BROADCAST_PEER } from '../../router/overlay/sleeve-codec';
import { SleeveSession } from '../../router/overlay/sleeve-session';
import { SleeveKeyRing } from '../../router/mesh/sleeve-keys';
import { loadSodium, wasmSodium } from '../../router/mesh/sodium';

t.before(async () => { await loadSodium(); });

const A = '02:00:00:00:00:0a' as PeerName;
const B = '02:00:00:00:00:0b' as PeerName;
const C = '02:00:00:00:00:0c' as PeerName;

t.test('sodium-native and libsodium-wrappers produce identical ciphertext and open each other', async (t) => {
  const native = nativeAead();
  t.ok(native, 'sodium-native loads here');
  const wasm = wasmAead(await wasmSodium());
  const rng = new SeededRng(5);
  for (const size of [0, 1, 60, 1400, 9000]) {
    const key = Buffer.from(Array.from({ length: 32 }, () => Math.floor(rng.next() * 256)));
    const nonce = Buffer.alloc(12, 7);
    const ad = Buffer.from('header bytes....');
    const msg = Buffer.from(Array.from({ length: size }, () => Math.floor(rng.next() * 256)));
    const b1 = Buffer.alloc(size + 16); msg.copy(b1);
    const b2 = Buffer.alloc(size + 16); msg.copy(b2);
    t.equal(native!.sealInPlace(b1, 0, size, ad, nonce, key), size + 16);
    wasm.sealInPlace(b2, 0, size, ad, nonce, key);
    t.ok(b1.equals(b2), `identical ciphertext for ${size} bytes`);
    t.equal(wasm.openInPlace(b1, 0, size + 16, ad, nonce, key), size);
    t.ok(b1.subarray(0, size).equals(msg), 'wasm opens native');
    t.equal(native!.openInPlace(b2, 0, size + 16, ad, nonce, key), size);
    const tampered = Buffer.alloc(size + 16);
    msg.copy(tampered);
    native!.sealInPlace(tampered, 0, size, ad, nonce, key);
    tampered[size] = tampered[size]! ^ 1;
    t.equal(native!.openInPlace(Buffer.from(tampered), 0, size + 16, ad, nonce, key), -1, 'native refuses a bad tag');
    t.equal(wasm.openInPlace(Buffer.from(tampered), 0, size + 16, ad, nonce, key), -1, 'wasm refuses a bad tag');
  }
  t.equal(frameAead().backend, 'sodium-native');
});

t.test('a sealed datagram opens once; tampering anywhere fails; a replay is refused', async (t) => {
  const keys = (): SleeveKeyRing => new SleeveKeyRing(new Uint8Array(32).fill(1), new Uint8Array(32).fill(1));
  const sender = new SleeveSession(frameAead(), keys(), Uint8Array.of(2, 0, 0, 0, 0, 10));
  const receiver = new SleeveSession(frameAead(), keys(), Uint8Array.of(2, 0, 0, 0, 0, 11));
  const buf = Buffer.alloc(200);
  buf.write('hello frame body', 16);
  const n = sender.seal(buf, 0, SLEEVE_TYPE_FRAME, 16);
  const wire = Buffer.from(buf.subarray(0, n));
  for (let i = 0; i < n; i++) {
    const bad = Buffer.from(wire);
    bad[i] = bad[i]! ^ 0x01;
    const h = readSleeveHeader(bad, 0, n);
    if (typeof h === 'string') continue;
    t.equal(receiver.open(bad, 0, n, h.counter), 'auth', `byte ${i} flipped`);
  }
  const ok = Buffer.from(wire);
  const h = readSleeveHeader(ok, 0, n);
  t.ok(typeof h !== 'string');
  if (typeof h === 'string') return;
  t.equal(h.sender, '02:00:00:00:00:0a');
  t.equal(receiver.open(ok, 0, n, h.counter), 16);
  t.equal(ok.subarray(16, 32).toString(), 'hello frame body');
  t.equal(receiver.open(Buffer.from(wire), 0, n, h.counter), 'replay');
});

t.test('sleeve and inner headers: round trip and hostile input', async (t) => {
  const buf = Buffer.alloc(16);
  writeSleeveHeader(buf, 0, SLEEVE_TYPE_FRAME, Uint8Array.of(1, 2, 3, 4, 5, 6), 2 ** 40 + 5);
  t.same(readSleeveHeader(buf, 0, 16), { type: 1, sender: '01:02:03:04:05:06', counter: 2 ** 40 + 5 });
  t.equal(readSleeveHeader(buf, 0, 15), 'short');
  const v = Buffer.from(buf); v[0] = 9;
  t.equal(readSleeveHeader(v, 0, 16), 'version');
  const ty = Buffer.from(buf); ty[1] = 77;
  t.equal(readSleeveHeader(ty, 0, 16), 'type');
  t.equal(readInnerHeader(Buffer.alloc(26), 0, 26), null, 'inner header without a whole Ethernet header');
  const rng = new SeededRng(99);
  for (let i = 0; i < 2000; i++) {
    const len = Math.floor(rng.next() * 40);
    const b = Buffer.from(Array.from({ length: len }, () => Math.floor(rng.next() * 256)));
    readSleeveHeader(b, 0, len);
    readInnerHeader(b, 0, len);
  }
  t.pass('2000 random inputs parsed without throwing (seed 99)');
});

t.test('MAC table: learning, moves, aging, eviction', async (t) => {
  const m = new MacTable(1000, 2);
  const mac1 = readMac(Buffer.from([0x0a, 0, 0, 0, 0, 1]), 0);
  const mac2 = readMac(Buffer.from([0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54]), 0);
  t.equal(formatMac(mac2), 'fe:dc:ba:98:76:54');
  t.equal(m.learn(mac1, A, 0), null);
  t.equal(m.lookup(mac1, 500), A);
  t.equal(m.learn(mac1, B, 600), A, 'reports the move');
  t.equal(m.lookup(mac1, 1500), B, 'refreshed by the move');
  t.equal(m.lookup(mac1, 1700), null, 'expired');
  m.learn(mac2, C, 1800);
  m.learn(12345, A, 1900);
  t.equal(m.size, 2, 'bounded: the oldest went');
  m.forgetPeer(A);
  t.equal(m.lookup(12345, 1900), null);
});

t.test('MacMap: six bytes as two halves, by bytes and by 48-bit key alike', async (t) => {
  const m = new MacMap<string>();
  const bytes = Buffer.from([0, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0]);
  m.set(bytes, 1, 'high');
  t.equal(m.getKey(readMac(bytes, 1)), 'high', 'set by bytes, found by key');
  m.setKey(readMac(Buffer.from([0x0a, 0, 0, 0, 0, 1]), 0), 'low');
  t.equal(m.get(Buffer.from([0x0a, 0, 0, 0, 0, 1]), 0), 'low', 'set by key, found by bytes');
  m.setKey(readMac(Buffer.from([0x0a, 0, 0, 0, 0, 2]), 0), 'same first half');
  m.set(bytes, 1, 'replaced');
  t.equal(m.size, 3, 'three keys, one replaced');
  t.equal(m.get(Buffer.from([0x0a, 0, 0, 0, 0, 3]), 0), undefined, 'a key never set');
  t.equal(m.get(Buffer.from([0x0b, 0, 0, 0, 0, 1]), 0), undefined, 'another first half');
  const seen: string[] = [];
  m.forEach((v, key) => seen.push(`${formatMac(key)}=${v}`));
  t.same(seen.sort(), ['0a:00:00:00:00:01=low', '0a:00:00:00:00:02=same first half', 'fe:dc:ba:98:76:54=replaced'], 'forEach gives the 48-bit keys');
  m.forEach((v, key) => { if (v !== 'low') m.deleteKey(key); });
  t.equal(m.size, 1, 'deleting inside forEach');
  t.notOk(m.deleteKey(readMac(bytes, 1)), 'a key deleted twice');
  m.clear();
  t.equal(m.size, 0);
  t.equal(m.get(Buffer.from([0x0a, 0, 0, 0, 0, 1]), 0), undefined, 'cleared');
});

t.test('MAC table by bytes and by number agree', async (t) => {
  const m = new MacTable(1000, 4);
  const frame = Buffer.from([9, 9, 0x02, 0x42, 0xac, 0x11, 0, 2]);
  t.equal(m.learnAt(frame, 2, A, 0), null);
  t.equal(m.lookup(readMac(frame, 2), 10), A, 'learnt from bytes, looked up by number');
  t.equal(m.learn(readMac(frame, 2), B, 20), A, 'a move by number reports the owner learnt by bytes');
  t.equal(m.lookupAt(frame, 2, 30), B);
  t.equal(m.lookupAt(frame, 2, 1021), null, 'aged by bytes too');
});

t.test('forwarder decisions', async (t) => {
  const routes: RouteView = {
    nextHop: (dst) => (dst === B ? B : dst === C ? B : null),
    broadcastChildren: (origin) => (origin === A ? [B] : origin === C ? [] : []),
  };
  const f = new Forwarder(A, new MacTable(60_000, 100));
  const frame = (dst: number[], src: number[]) => Buffer.from([...dst, ...src, 0x08, 0x00]);
  const local = [0x0a, 0, 0, 0, 0, 1];
  const remote = [0x0a, 0, 0, 0, 0, 3];
  t.same(f.fromBridge(frame([0xff, 0xff, 0xff, 0xff, 0xff, 0xff], local), 0, routes, 0), { kind: 'broadcast', via: [B] }, 'broadcast floods our tree');
  t.same(f.fromBridge(frame(remote, local), 0, routes, 0), { kind: 'broadcast', via: [B] }, 'unknown unicast floods');
  t.same(f.fromOverlay(C, A, 5, frame(local, remote), 0, routes, 1), { deliver: true, via: [], drop: null }, 'for us: deliver');
  t.same(f.fromBridge(frame(remote, local), 0, routes, 2), { kind: 'unicast', dst: C, via: B }, 'learnt: unicast via the next hop');
  t.same(f.fromBridge(frame(local, local), 0, routes, 2), { kind: 'drop', reason: 'local' });
  t.same(f.fromOverlay(C, B, 5, frame(remote, remote), 0, routes, 3), { deliver: false, via: [B], drop: null }, 'relay toward B');
  t.same(f.fromOverlay(C, B, 0, frame(remote, remote), 0, routes, 3), { deliver: false, via: [], drop: 'hops' }, 'out of hops');
  t.same(f.fromOverlay(C, '02:00:00:00:00:0d' as PeerName, 5, frame(remote, remote), 0, routes, 3), { deliver: false, via: [], drop: 'no-route' });
  t.same(f.fromOverlay(A, B, 5, frame(remote, local), 0, routes, 3), { deliver: false, via: [], drop: 'loop' }, 'our own frame came back');
  t.same(f.fromOverlay(C, BROADCAST_PEER, 5, frame([0xff, 0xff, 0xff, 0xff, 0xff, 0xff], remote), 0, routes, 3), { deliver: true, via: [], drop: null });
});
