// The sleeve's cipher, end to end below the sockets: the handshake agrees on
// AES-256-GCM only when both Hellos offer it (an older peer, or one without
// the hardware, keeps ChaCha20-Poly1305), a man in the middle who adds or
// strips the offer breaks the handshake, the two ciphers never share key
// bytes; and the sleeve session seals and opens with every backend, refuses
// a datagram sealed under the other cipher, and frees a key's AES context the
// moment the key ring drops it.

import t from 'tap';
import { Handshake, HandshakeOptions, HandshakeResult } from '../../router/mesh/handshake';
import { decodeHello, encodeHello, HelloInfo, HELLO_CIPHER_AES_256_GCM } from '../../router/mesh/handshake-messages';
import { epochKeys } from '../../router/mesh/key-derivation';
import { DEFAULT_REKEY_OPTIONS, KeySchedule } from '../../router/mesh/key-schedule';
import { stretchPassword } from '../../router/mesh/password-key';
import { PeerKey } from '../../router/mesh/peer-key';
import { SleeveCipher, SleeveKeyRing } from '../../router/mesh/sleeve-keys';
import { loadSodium, wasmSodium } from '../../router/mesh/sodium';
import { AesGcm, AesGcmKey, probeAesGcm } from '../../router/overlay/aes-gcm';
import { FrameAead, nativeAead, wasmAead } from '../../router/overlay/frame-aead';
import { readSleeveHeader, SLEEVE_TYPE_FRAME } from '../../router/overlay/sleeve-codec';
import { SleeveSession } from '../../router/overlay/sleeve-session';
import { REJECT_AFTER_COUNTER } from '../../router/overlay/replay-window';

const keyA = PeerKey.fromSeed(new Uint8Array(32).fill(0xa1));
const keyB = PeerKey.fromSeed(new Uint8Array(32).fill(0xb2));
const infoA: HelloInfo = { name: keyA.name, nickname: 'a', incarnation: 1, listenPort: 6783 };
const infoB: HelloInfo = { name: keyB.name, nickname: 'b', incarnation: 1, listenPort: 6783 };
let password: Uint8Array;

t.before(async () => {
  await loadSodium();
  password = stretchPassword('sleeve cipher test');
});

function aes(): AesGcm {
  const probe = probeAesGcm();
  if (probe.aes === null) throw new Error(`AES-256-GCM not available here: ${probe.reason}`);
  return probe.aes;
}

/** Runs a handshake; `wire` may rewrite each Hello on its way (a man in the middle). */
function handshake(a: Partial<HandshakeOptions>, b: Partial<HandshakeOptions>, wire = (h: Uint8Array): Uint8Array => h): [HandshakeResult, HandshakeResult] {
  const sa = Handshake.start({ local: infoA, key: keyA, passwordKey: password, ...a });
  const sb = Handshake.start({ local: infoB, key: keyB, passwordKey: password, ...b });
  const outA = sa.handshake.consumeHello(wire(sb.hello));
  const outB = sb.handshake.consumeHello(wire(sa.hello));
  return [sa.handshake.consumeAuth(outB.auth), sb.handshake.consumeAuth(outA.auth)];
}

function errorCode(fn: () => unknown): string {
  try {
    fn();
    return 'no error';
  } catch (err) {
    return (err as { code?: string }).code ?? 'not a RouterError';
  }
}

/** Both schedules' sleeve keys pair up (A's send is B's receive and back). */
function sleeveKeysAgree(ra: HandshakeResult, rb: HandshakeResult): boolean {
  const ka = new KeySchedule(ra.secrets!, DEFAULT_REKEY_OPTIONS, 0);
  const kb = new KeySchedule(rb.secrets!, DEFAULT_REKEY_OPTIONS, 0);
  const ok = ka.sleeve.sendKey.equals(kb.sleeve.receiveKeys[0]!) && kb.sleeve.sendKey.equals(ka.sleeve.receiveKeys[0]!);
  ka.dispose();
  kb.dispose();
  return ok;
}

t.test('negotiation: both offer -> AES-256-GCM; one does not -> ChaCha20-Poly1305; plaintext -> no cipher', async (t) => {
  const [ra, rb] = handshake({ offerAesGcm: true }, { offerAesGcm: true });
  t.equal(ra.secrets!.sleeveCipher, 'aes-256-gcm');
  t.equal(rb.secrets!.sleeveCipher, 'aes-256-gcm');
  t.ok(sleeveKeysAgree(ra, rb), 'the AES sleeve keys agree');
  t.equal(new KeySchedule(ra.secrets!, DEFAULT_REKEY_OPTIONS, 0).status().sleeveCipher, 'aes-256-gcm', 'status reports it');

  for (const [a, b] of [[true, false], [false, true], [false, false]] as const) {
    const [xa, xb] = handshake({ offerAesGcm: a }, { offerAesGcm: b });
    t.equal(xa.secrets!.sleeveCipher, 'chacha20-poly1305', `A offers ${a}, B ${b}: ChaCha20-Poly1305 (A)`);
    t.equal(xb.secrets!.sleeveCipher, 'chacha20-poly1305', '(and B)');
    t.ok(sleeveKeysAgree(xa, xb), 'keys agree');
  }

  const plain = Handshake.start({ local: infoA, key: keyA, passwordKey: null, offerAesGcm: true });
  t.equal(decodeHello(plain.hello).ciphers, 0, 'a plaintext Hello offers no cipher');
});

t.test('a peer without AES: a Hello without the offer has no cipher byte, and the offer is one trailing byte', async (t) => {
  const old = Handshake.start({ local: infoA, key: keyA, passwordKey: password });
  const { nonce, shares } = decodeHello(old.hello);
  t.equal(old.hello.length, 8 + 3 + 32 + 1 + 32, 'magic, versions, flags, nonce, count, one share: nothing else');
  t.same(Buffer.from(encodeHello({ minVersion: 3, maxVersion: 3, nonce, shares, ciphers: 0 })), Buffer.from(old.hello));
  const offer = Handshake.start({ local: infoA, key: keyA, passwordKey: password, offerAesGcm: true });
  t.equal(offer.hello.length, old.hello.length + 1, 'the offer adds one trailing byte');
  t.equal(offer.hello[offer.hello.length - 1], HELLO_CIPHER_AES_256_GCM);
});

t.test('a man in the middle who adds or strips the offer breaks the handshake on both sides', async (t) => {
  const strip = (h: Uint8Array): Uint8Array => (h.length === 77 ? h.subarray(0, 76) : h);
  const add = (h: Uint8Array): Uint8Array => (h.length === 76 ? Uint8Array.of(...h, HELLO_CIPHER_AES_256_GCM) : h);
  const flip = (h: Uint8Array): Uint8Array => (h.length === 77 ? Uint8Array.of(...h.subarray(0, 76), 0x02) : h);
  for (const [name, wire, a, b] of [
    ['stripped (downgrade to ChaCha20-Poly1305)', strip, true, true],
    ['added where one side has no AES', add, true, false],
    ['changed to an unknown bit', flip, true, true],
  ] as const) {
    const sa = Handshake.start({ local: infoA, key: keyA, passwordKey: password, offerAesGcm: a });
    const sb = Handshake.start({ local: infoB, key: keyB, passwordKey: password, offerAesGcm: b });
    const outA = sa.handshake.consumeHello(wire(sb.hello));
    const outB = sb.handshake.consumeHello(wire(sa.hello));
    t.equal(errorCode(() => sa.handshake.consumeAuth(outB.auth)), 'password-mismatch', `${name}: A refuses`);
    t.equal(errorCode(() => sb.handshake.consumeAuth(outA.auth)), 'password-mismatch', `${name}: B refuses`);
  }
});

t.test('the two ciphers take different key bytes from the same chain', async (t) => {
  const chain = new Uint8Array(32).fill(9);
  const c = epochKeys(chain, true, 'chacha20-poly1305');
  const a = epochKeys(chain, true, 'aes-256-gcm');
  t.same(a.controlSend, c.controlSend, 'the control keys do not depend on the sleeve cipher');
  t.notSame(Buffer.from(a.sleeveSend), Buffer.from(c.sleeveSend), 'sleeve send keys differ');
  t.notSame(Buffer.from(a.sleeveReceive), Buffer.from(c.sleeveReceive), 'sleeve receive keys differ');
  t.notSame(Buffer.from(a.sleeveSend), Buffer.from(c.sleeveReceive));
});

const KEY_AB = new Uint8Array(32).fill(0x11);
const KEY_BA = new Uint8Array(32).fill(0x22);
const ring = (cipher: SleeveCipher, send: Uint8Array, receive: Uint8Array): SleeveKeyRing => new SleeveKeyRing(send.slice(), receive.slice(), cipher);

function datagram(s: SleeveSession, body: Buffer): Buffer {
  const buf = Buffer.alloc(16 + body.length + 16);
  body.copy(buf, 16);
  const n = s.seal(buf, 0, SLEEVE_TYPE_FRAME, body.length);
  return buf.subarray(0, n);
}

function openDatagram(s: SleeveSession, d: Buffer): Buffer | string {
  const copy = Buffer.from(d);
  const h = readSleeveHeader(copy, 0, copy.length);
  if (typeof h === 'string') return h;
  const n = s.open(copy, 0, copy.length, h.counter);
  return typeof n === 'string' ? n : copy.subarray(16, 16 + n);
}

t.test('sessions with every backend: round trips, tampering, and the other cipher refused', async (t) => {
  const chacha: [string, FrameAead][] = [['sodium-native', nativeAead()!], ['libsodium-wrappers', wasmAead(await wasmSodium())]];
  const backends: [string, SleeveCipher, FrameAead][] = [...chacha.map(([n, f]) => [n, 'chacha20-poly1305', f] as [string, SleeveCipher, FrameAead]),
    ['openssl', 'aes-256-gcm', chacha[0]![1]]];
  const me = Uint8Array.of(2, 0, 0, 0, 0, 1);
  for (const [name, cipher, frame] of backends) {
    const a = new SleeveSession(frame, ring(cipher, KEY_AB, KEY_BA), me, aes());
    const b = new SleeveSession(frame, ring(cipher, KEY_BA, KEY_AB), me, aes());
    t.equal(a.cipher, cipher);
    for (const size of [0, 1400, 65_000]) {
      const body = Buffer.alloc(size, size & 0xff);
      const d = datagram(a, body);
      t.equal(d.length, 16 + size + 16, `${name}: ${size} bytes sealed`);
      const back = openDatagram(b, d);
      t.ok(Buffer.isBuffer(back) && back.equals(body), `${name}: ${size} bytes open`);
      t.equal(openDatagram(b, d), 'replay', `${name}: a replay is refused`);
      const badTag = Buffer.from(datagram(a, body));
      badTag[16 + size] = badTag[16 + size]! ^ 1;
      t.equal(openDatagram(b, badTag), 'auth', `${name}: a damaged tag`);
      const badHeader = Buffer.from(datagram(a, body));
      badHeader[7] = badHeader[7]! ^ 1;
      t.equal(openDatagram(b, badHeader), 'auth', `${name}: a damaged header (the associated data)`);
    }
    a.close();
    b.close();
  }
  // The same key bytes under the other cipher: nothing opens either way.
  const aesSender = new SleeveSession(chacha[0]![1], ring('aes-256-gcm', KEY_AB, KEY_BA), me, aes());
  const chachaReceiver = new SleeveSession(chacha[0]![1], ring('chacha20-poly1305', KEY_BA, KEY_AB), me);
  const chachaSender = new SleeveSession(chacha[0]![1], ring('chacha20-poly1305', KEY_AB, KEY_BA), me);
  const aesReceiver = new SleeveSession(chacha[0]![1], ring('aes-256-gcm', KEY_BA, KEY_AB), me, aes());
  t.equal(openDatagram(chachaReceiver, datagram(aesSender, Buffer.from('sealed with AES'))), 'auth', 'ChaCha20-Poly1305 session refuses AES');
  t.equal(openDatagram(aesReceiver, datagram(chachaSender, Buffer.from('sealed with ChaCha'))), 'auth', 'AES session refuses ChaCha20-Poly1305');
  t.throws(() => new SleeveSession(chacha[0]![1], ring('aes-256-gcm', KEY_AB, KEY_BA), me, null), /AES-256-GCM/, 'AES needs a data plane that has it');
});

t.test('a session stops sealing at the counter limit rather than reuse a nonce, with either cipher', async (t) => {
  const me = Uint8Array.of(2, 0, 0, 0, 0, 1);
  for (const cipher of ['chacha20-poly1305', 'aes-256-gcm'] as SleeveCipher[]) {
    const keys = ring(cipher, KEY_AB, KEY_BA);
    const s = new SleeveSession(nativeAead()!, keys, me, aes());
    keys.sendCounterCell[0] = REJECT_AFTER_COUNTER - 1;
    t.equal(datagram(s, Buffer.alloc(10)).length, 16 + 10 + 16, `${cipher}: the last counter is used`);
    const buf = Buffer.alloc(16 + 10 + 16);
    t.equal(s.seal(buf, 0, SLEEVE_TYPE_FRAME, 10), -1, `${cipher}: then nothing more is sealed`);
    s.close();
  }
});

t.test('an AES context lives exactly as long as its key in the ring', async (t) => {
  const live = new Set<AesGcmKey>();
  const counting: AesGcm = {
    key: (key, encrypt) => {
      const k = aes().key(key, encrypt);
      live.add(k);
      const dispose = k.dispose.bind(k);
      k.dispose = (): void => { live.delete(k); dispose(); };
      return k;
    },
  };
  const keys = ring('aes-256-gcm', KEY_AB, KEY_BA);
  const s = new SleeveSession(nativeAead()!, keys, Uint8Array.of(2, 0, 0, 0, 0, 1), counting);
  t.equal(live.size, 2, 'one to seal, one to open phase 0');
  keys.addReceive(1, new Uint8Array(32).fill(3));
  t.equal(live.size, 3, 'a second receive phase');
  keys.rotateSend(1, new Uint8Array(32).fill(4));
  t.equal(live.size, 3, 'rotating the send key frees the old context at once');
  keys.dropReceive(0);
  t.equal(live.size, 2, 'dropping a receive key frees its context');
  keys.dispose();
  t.equal(live.size, 0, 'disposing the ring frees everything');
  t.equal(s.seal(Buffer.alloc(64), 0, SLEEVE_TYPE_FRAME, 10), -1, 'and nothing is sealed after');
  const keys2 = ring('aes-256-gcm', KEY_AB, KEY_BA);
  const s2 = new SleeveSession(nativeAead()!, keys2, Uint8Array.of(2, 0, 0, 0, 0, 1), counting);
  s2.close();
  t.equal(live.size, 0, 'closing the session (neighbour removed) frees its contexts');
  t.equal(keys2.onChange, null, 'and stops listening to the ring');
});
