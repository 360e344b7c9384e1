// Shared helpers for the IPAM tests: peer names, seeds that are printed so a
// failing random run can be replayed (IPAM_SEED=... npx tap ...).

import type { Test } from 'tap';
import { IpamError, IpamErrorCode } from '../../ipam/errors';
import { PeerName, peerNameFromBytes } from '../../router/mesh/peer-name';
import { SeededRng } from '../../common/rng';

export function peer(i: number): PeerName {
  const b = new Uint8Array(6);
  b[0] = 0x0a;
  b[4] = (i >> 8) & 0xff;
  b[5] = i & 0xff;
  return peerNameFromBytes(b);
}

/** The seed for a randomised test: IPAM_SEED if set, else `fallback`. Always printed via t.comment by callers. */
export function testSeed(fallback: number): number {
  const env = process.env['IPAM_SEED'];
  return env !== undefined && env !== '' ? Number(env) : fallback;
}

export function rngFor(seed: number): SeededRng {
  return new SeededRng(seed);
}

/** Asserts that `fn` throws an IpamError with `code` (and a message matching `re`). */
export function throwsIpam(t: Test, fn: () => unknown, code: IpamErrorCode, re?: RegExp, msg?: string): void {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof IpamError)) { t.fail(`${msg ?? code}: expected IpamError, got ${String(err)}`); return; }
    t.equal(err.code, code, msg ?? `code ${code}: ${err.message}`);
    if (re) t.match(err.message, re);
    return;
  }
  t.fail(`${msg ?? code}: expected an IpamError, nothing thrown`);
}

/** Same as throwsIpam for a promise. */
export async function rejectsIpam(t: Test, p: Promise<unknown>, code: IpamErrorCode, re?: RegExp): Promise<void> {
  try {
    await p;
  } catch (err) {
    if (!(err instanceof IpamError)) { t.fail(`expected IpamError, got ${String(err)}`); return; }
    t.equal(err.code, code, `code ${code}: ${err.message}`);
    if (re) t.match(err.message, re);
    return;
  }
  t.fail(`expected rejection with ${code}`);
}
