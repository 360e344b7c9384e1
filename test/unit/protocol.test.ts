// Control message codec and framing: round trips, and hostile bytes that must
// give a RouterError, never a crash or a silent success.

import t from 'tap';
import { RouterError } from '../../router/mesh/errors';
import { frame, FrameDecoder } from '../../router/mesh/framing';
import type { PeerName } from '../../router/mesh/peer-name';
import { decodeControlMessage, encodeGossip, encodeHeartbeat, encodeRefuse } from '../../router/mesh/protocol';
import { SeededRng } from '../../common/rng';

const A = '02:00:00:00:00:0a' as PeerName;
const B = '02:00:00:00:00:0b' as PeerName;

t.test('round trips', async (t) => {
  t.same(decodeControlMessage(encodeHeartbeat()), { type: 'heartbeat' });
  const payload = Uint8Array.from([1, 2, 3]);
  t.same(decodeControlMessage(encodeGossip('unicast', 'ipam', A, B, payload)),
    { type: 'gossip', kind: 'unicast', channel: 'ipam', src: A, dst: B, payload });
  t.same(decodeControlMessage(encodeGossip('broadcast', 'dns', A, null, payload)),
    { type: 'gossip', kind: 'broadcast', channel: 'dns', src: A, dst: null, payload });
  t.same(decodeControlMessage(encodeRefuse('conn-limit', 'too many')), { type: 'refuse', code: 'conn-limit', message: 'too many' });
});

t.test('unknown types, kinds and bad channel names are refused by name', async (t) => {
  t.throws(() => decodeControlMessage(Uint8Array.of(99)), /unknown type 99/);
  const g = encodeGossip('neighbour', 'topology', A, null, new Uint8Array(0));
  const badKind = g.slice();
  badKind[1] = 7;
  t.throws(() => decodeControlMessage(badKind), /unknown kind 7/);
  const badName = encodeGossip('neighbour', 'topology', A, null, new Uint8Array(0));
  badName[4] = 'T'.charCodeAt(0);
  t.throws(() => decodeControlMessage(badName), /invalid channel name/);
});

t.test('random and truncated bytes give RouterError only', async (t) => {
  const seed = 1234;
  const rng = new SeededRng(seed);
  const valid = [encodeHeartbeat(), encodeGossip('unicast', 'ipam', A, B, new Uint8Array(40)), encodeRefuse('x', 'y')];
  const inputs: Uint8Array[] = [];
  for (const v of valid) for (let n = 0; n < v.length; n++) inputs.push(v.subarray(0, n));
  for (let i = 0; i < 3000; i++) {
    const len = Math.floor(rng.next() * 64);
    const b = new Uint8Array(len);
    for (let j = 0; j < len; j++) b[j] = Math.floor(rng.next() * 256);
    if (len > 0 && i % 2 === 0) b[0] = 1 + (i % 3);
    inputs.push(b);
  }
  let foreign = 0;
  for (const input of inputs) {
    try {
      decodeControlMessage(input);
    } catch (err) {
      if (!(err instanceof RouterError)) foreign++;
    }
  }
  t.equal(foreign, 0, `only RouterError thrown (seed ${seed})`);
});

t.test('frame decoder reassembles split frames and refuses oversize lengths before buffering', async (t) => {
  const drain = (d: FrameDecoder): Uint8Array[] => {
    const out: Uint8Array[] = [];
    for (let p = d.next(); p !== null; p = d.next()) out.push(p);
    return out;
  };
  const d = new FrameDecoder(100);
  const wire = new Uint8Array([...frame(Uint8Array.of(1, 2, 3)), ...frame(new Uint8Array(0)), ...frame(Uint8Array.of(9))]);
  const out: Uint8Array[] = [];
  for (const byte of wire) { d.push(Uint8Array.of(byte)); out.push(...drain(d)); }
  t.same(out.map((p) => [...p]), [[1, 2, 3], [], [9]]);
  const whole = new FrameDecoder(100);
  whole.push(wire);
  t.equal(drain(whole).length, 3);
  const big = new FrameDecoder(100);
  big.push(Uint8Array.of(0, 0, 0, 101));
  t.throws(() => big.next(), { code: 'limit' });
});
