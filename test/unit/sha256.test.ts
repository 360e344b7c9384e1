// common/sha256.ts against node:crypto: the FIPS 180-4 examples, every length
// around the padding boundaries, and seeded random inputs (the seed is printed
// on a mismatch); and the API socket path it names, as before.

import { createHash } from 'node:crypto';
import t from 'tap';
import { apiSocketFor } from '../../cli/api-socket';
import { SeededRng, randomInt } from '../../common/rng';
import { sha256Hex } from '../../common/sha256';

const nodeHex = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

t.test('known digests and the padding edges', async (t) => {
  t.equal(sha256Hex(new Uint8Array(0)), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  t.equal(sha256Hex(Buffer.from('abc')), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  t.equal(sha256Hex(Buffer.from('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq')),
    '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1');
  for (let len = 0; len <= 200; len++) {
    const b = Buffer.alloc(len, len & 0xff);
    if (sha256Hex(b) !== nodeHex(b)) t.fail(`length ${len}`);
  }
  const big = Buffer.alloc(100_000, 0x61);
  t.equal(sha256Hex(big), nodeHex(big), 'many blocks');
});

t.test('seeded random inputs agree with node:crypto', async (t) => {
  const seed = 0x5a256;
  const rng = new SeededRng(seed);
  for (let i = 0; i < 500; i++) {
    const b = new Uint8Array(randomInt(rng, 300));
    for (let k = 0; k < b.length; k++) b[k] = randomInt(rng, 256);
    if (sha256Hex(b) !== nodeHex(b)) t.fail(`seed ${seed}, case ${i}: ${Buffer.from(b).toString('hex')}`);
  }
  t.pass('500 inputs');
});

t.test('the API socket of a data directory is named by the first 16 hex digits of its sha256', async (t) => {
  for (const dir of ['/tmp/weave-sim-x/h1', '/srv/wéave', '/var/lib/weave2']) {
    t.equal(apiSocketFor(dir), `/run/weave/weave-${nodeHex(Buffer.from(dir, 'utf8')).slice(0, 16)}.sock`, dir);
  }
  t.equal(apiSocketFor('/var/lib/weave'), '/run/weave/weave.sock');
});
