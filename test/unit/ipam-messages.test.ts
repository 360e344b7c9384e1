// The IPAM wire decoder's own checks (ipam/messages.ts), each hit by a message
// that breaks that check alone: bytes written field by field, so a case fails
// for its own reason and not because it also ran short. The builder is first
// shown to write exactly what encodeIpamMessage writes for valid messages.

import t from 'tap';
import { AddressRange } from '../../ipam/address-range';
import { MAX_GRANT_HISTORY } from '../../ipam/constants';
import { IpamError } from '../../ipam/errors';
import { decodeIpamMessage, encodeIpamMessage } from '../../ipam/messages';
import { Ring } from '../../ipam/ring';
import { MeshWriter, type PeerName } from '../../router/mesh/peer-name';
import { peer } from './ipam-helpers';

const RANGE = AddressRange.parse('10.32.0.0/12', 'range');
const SEED = [peer(1), peer(2)];

interface RawEntry { token: number; owner: PeerName; version: number; free: number; flags: number; after?: Uint8Array }

function cidr(w: MeshWriter, family: number, address: number[], prefix: number): void {
  w.u8(family).bytes(Uint8Array.from(address)).u8(prefix);
}

function ringMessage(o: { keys?: [PeerName, Uint8Array][]; keyCount?: number; entries: RawEntry[]; entryCount?: number }): Uint8Array {
  const w = new MeshWriter(256).u8(2).u8(1);
  cidr(w, 4, [10, 32, 0, 0], 12);
  w.u16(SEED.length);
  for (const p of SEED) w.peerName(p);
  const keys = o.keys ?? [];
  w.u16(o.keyCount ?? keys.length);
  for (const [p, k] of keys) w.peerName(p).bytes(k);
  w.u16(o.entryCount ?? o.entries.length);
  for (const e of o.entries) {
    w.u32(e.token).peerName(e.owner).u53(e.version).u32(e.free).u8(e.flags);
    if (e.after) w.bytes(e.after);
  }
  return w.finish();
}

function consensusMessage(initPeerCount: number, flags: number): Uint8Array {
  const w = new MeshWriter(64).u8(2).u8(2);
  cidr(w, 4, [10, 32, 0, 0], 12);
  w.u16(initPeerCount).u16(1).peerName(peer(1)).u53(1).u8(flags);
  return w.finish();
}

function requestMessage(family: number, address: number[], prefix: number): Uint8Array {
  const w = new MeshWriter(64).u8(2).u8(3);
  cidr(w, 4, [10, 32, 0, 0], 12);
  cidr(w, family, address, prefix);
  return w.finish();
}

function refusal(bytes: Uint8Array): string {
  try {
    decodeIpamMessage(bytes);
    return 'decoded';
  } catch (err) {
    return err instanceof IpamError ? `${err.code}: ${err.message}` : `not an IpamError: ${String(err)}`;
  }
}

const initialEntries = (): RawEntry[] => Ring.initialState(RANGE, SEED).entries.map((e) => ({ token: e.token, owner: e.owner, version: e.version, free: e.free, flags: 0 }));

t.test('the builder writes what the encoder writes', async (t) => {
  t.same(ringMessage({ entries: initialEntries() }), encodeIpamMessage({ kind: 'ring', ring: Ring.initialState(RANGE, SEED) }), 'a ring');
  t.equal(refusal(ringMessage({ entries: initialEntries() })), 'decoded');
  const request = requestMessage(4, [10, 32, 1, 0], 24);
  t.equal(refusal(request), 'decoded', 'a space request');
  t.same(request, encodeIpamMessage({ kind: 'space-request', request: { range: RANGE, subnet: AddressRange.parse('10.32.1.0/24', 's').cidr } }));
  t.equal(refusal(consensusMessage(2, 0)), 'decoded', 'a consensus record without promise or value');
});

t.test('every decoder check refuses the message that breaks it, by name', async (t) => {
  const key = new Uint8Array(32).fill(5);
  const entries = initialEntries();
  const withFlags = (flags: number, after?: Uint8Array): RawEntry[] => [{ ...entries[0]!, flags, ...(after ? { after } : {}) }, ...entries.slice(1)];
  const cases: [string, Uint8Array, RegExp][] = [
    ['a family that is neither 4 nor 6', requestMessage(5, [10, 32, 1, 0], 24), /family 5 is neither 4 nor 6/],
    ['an IPv4 prefix over 32', requestMessage(4, [10, 32, 1, 0], 33), /prefix \/33 for IPv4/],
    ['host bits set', requestMessage(4, [10, 32, 1, 1], 24), /has host bits set/],
    ['more keys announced than bytes left', ringMessage({ keyCount: 100, entries }), /100 keys announced, only \d+ bytes left/],
    ['two keys for one peer', ringMessage({ keys: [[peer(1), key], [peer(1), key]], entries }), /two keys for/],
    ['more entries announced than bytes left', ringMessage({ entries: [], entryCount: 100 }), /100 entries announced, only 0 bytes left/],
    ['an entry flag nobody defined', ringMessage({ entries: withFlags(8) }), /entry 0 has unknown flags 0x8/],
    ['earlier grants flagged, none there', ringMessage({ entries: withFlags(4, Uint8Array.of(0)) }), /entry 0 carries 0 earlier grants/],
    ['more earlier grants than kept', ringMessage({ entries: withFlags(4, Uint8Array.of(MAX_GRANT_HISTORY + 1)) }), new RegExp(`carries ${MAX_GRANT_HISTORY + 1} earlier grants`)],
    ['a consensus for no peers', consensusMessage(0, 0), /initPeerCount is 0/],
    ['a record flag nobody defined', consensusMessage(2, 4), /unknown record flags 0x4/],
  ];
  for (const [what, bytes, why] of cases) t.match(refusal(bytes), new RegExp(`^decode: .*${why.source}`), what);
});
