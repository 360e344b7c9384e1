// The reader every wire format is built on (common/codec.ts): each bound is
// checked before anything is read or allocated, and a failure is a coded
// CodecError, never a RangeError or a silent zero. Formats that use these
// readers have their own tests; these pin the bounds themselves, which some
// formats cannot reach (a payload limit equal to the frame limit, say).

import t from 'tap';
import { ByteReader, ByteWriter } from '../../common/codec';
import { CodecError } from '../../common/errors';

function codeOf(fn: () => unknown): string {
  try {
    fn();
    return 'no error';
  } catch (err) {
    return err instanceof CodecError ? err.code : `not a CodecError: ${String(err)}`;
  }
}

const reader = (b: Uint8Array): ByteReader => new ByteReader(b, 'test message');

t.test('length prefixes over the caller\'s maximum are refused though the bytes are there', async (t) => {
  const short = new ByteWriter().varBytes(new Uint8Array(10)).finish();
  t.equal(reader(short).varBytes(10, 'field').length, 10, 'at the maximum: read');
  t.equal(codeOf(() => reader(short).varBytes(9, 'field')), 'limit', 'one over (u16 prefix)');
  const long = new ByteWriter().longBytes(new Uint8Array(10)).finish();
  t.equal(reader(long).longBytes(10, 'field').length, 10);
  t.equal(codeOf(() => reader(long).longBytes(9, 'field')), 'limit', 'one over (u32 prefix)');
  const text = new ByteWriter().string('héllo').finish();
  t.equal(reader(text).string(6, 'name'), 'héllo', 'UTF-8 counted in bytes');
  t.equal(codeOf(() => reader(text).string(5, 'name')), 'limit');
  const counted = new ByteWriter().u16(3).finish();
  t.equal(reader(counted).count(3, 'entry'), 3);
  t.equal(codeOf(() => reader(counted).count(2, 'entry')), 'limit');
});

t.test('truncation, bad UTF-8, 2^53 and trailing bytes are decode errors', async (t) => {
  t.equal(codeOf(() => reader(new Uint8Array(3)).u32('n')), 'decode', 'u32 from 3 bytes');
  const claimsMore = new ByteWriter().u16(5).finish();
  t.equal(codeOf(() => reader(claimsMore).varBytes(100, 'field')), 'decode', 'a prefix longer than what follows');
  const badText = Uint8Array.from([0, 2, 0xc3, 0x28]);
  t.equal(codeOf(() => reader(badText).string(10, 'name')), 'decode', 'invalid UTF-8');
  const huge = Uint8Array.from([0, 0x20, 0, 0, 0, 0, 0, 0]);
  t.equal(codeOf(() => reader(huge).u53('n')), 'decode', '2^53');
  t.equal(reader(Uint8Array.from([0, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])).u53('n'), Number.MAX_SAFE_INTEGER, '2^53 - 1');
  const r = reader(Uint8Array.from([1, 2]));
  r.u8('a');
  t.equal(codeOf(() => r.expectEnd()), 'decode', 'a trailing byte');
  r.u8('b');
  t.doesNotThrow(() => r.expectEnd());
});
