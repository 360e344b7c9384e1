// Peer names to bytes and back (router/mesh/peer-name.ts), through the
// bounded cache of converted names: results are the caller's own, a write at
// an offset touches only its six bytes, and past the cache's bound every
// name still converts right.

import t from 'tap';
import { PEER_NAME_BYTES, peerNameFromBytes, peerNameToBytes } from '../../router/mesh/peer-name';
import { SeededRng } from '../../common/rng';

t.test('names convert both ways, past the cache bound and again', async (t) => {
  const rng = new SeededRng(14);
  const bytes: Uint8Array[] = [];
  for (let i = 0; i < 5000; i++) {
    const b = new Uint8Array(PEER_NAME_BYTES);
    for (let j = 0; j < PEER_NAME_BYTES; j++) b[j] = Math.floor(rng.next() * 256);
    bytes.push(b);
  }
  let wrong = 0;
  for (let round = 0; round < 2; round++) {
    for (const b of bytes) if (!Buffer.from(peerNameToBytes(peerNameFromBytes(b))).equals(Buffer.from(b))) wrong++;
  }
  t.equal(wrong, 0, '10,000 conversions of 5,000 names, all exact');
  t.same([...peerNameToBytes(peerNameFromBytes(Uint8Array.of(0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff)))], [0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]);
});

t.test('the bytes are the caller\'s: changing them changes no later conversion', async (t) => {
  const name = peerNameFromBytes(Uint8Array.of(2, 1, 2, 3, 4, 5));
  const first = peerNameToBytes(name);
  first.fill(0);
  t.same([...peerNameToBytes(name)], [2, 1, 2, 3, 4, 5], 'a fresh copy each call');
  const out = Buffer.alloc(16, 0x77);
  t.equal(peerNameToBytes(name, out, 5), out, 'returns the buffer it wrote to');
  t.same([...out], [0x77, 0x77, 0x77, 0x77, 0x77, 2, 1, 2, 3, 4, 5, 0x77, 0x77, 0x77, 0x77, 0x77], 'six bytes at the offset, nothing around them');
  t.throws(() => peerNameToBytes(name, out, 12), RangeError, 'no room at the offset: refused, not written short');
});
