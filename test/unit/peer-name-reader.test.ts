// PeerNameReader: the names it reads from header bytes are those
// peerNameFromBytes makes, one string per peer (the same object each time),
// and its table stays bounded whatever names the wire carries.

import t from 'tap';
import { peerNameFromBytes } from '../../router/mesh/peer-name';
import { PeerNameReader } from '../../router/overlay/peer-name-reader';

t.test('reads the same names as peerNameFromBytes, one string per peer', async (t) => {
  const r = new PeerNameReader();
  const buf = Buffer.from([0xff, 0x02, 0xab, 0xcd, 0x00, 0x7f, 0x80, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06]);
  for (const off of [0, 1, 7]) t.equal(r.read(buf, off), peerNameFromBytes(buf, off), `offset ${off}`);
  const again = Buffer.from(buf);
  t.equal(r.read(again, 1), r.read(buf, 1), 'equal bytes elsewhere give an equal name');
  t.equal(r.size, 3, 'one entry per distinct name');
  // High bytes above 0x7f in every position: the 48-bit key must not collide with a lower name.
  const hi = Buffer.from([0x80, 0, 0, 0, 0, 0]);
  const lo = Buffer.from([0, 0x80, 0, 0, 0, 0]);
  t.not(r.read(hi, 0), r.read(lo, 0));
  t.equal(r.read(hi, 0), '80:00:00:00:00:00');
  t.equal(r.read(lo, 0), '00:80:00:00:00:00');
});

t.test('a stranger naming many peers cannot grow the table past its bound', async (t) => {
  const r = new PeerNameReader(16);
  const buf = Buffer.alloc(6);
  for (let i = 0; i < 1000; i++) {
    buf.writeUIntBE(i * 7919, 0, 6);
    t.equal(r.read(buf, 0), peerNameFromBytes(buf, 0));
    if (r.size > 16) { t.fail(`size ${r.size} after ${i + 1} names`); break; }
  }
  t.ok(r.size <= 16);
});
