// One error class for IPAM, carrying a stable code. Callers (HTTP glue, CLI,
// tests) branch on `code`, never on message text. `config` is the user's
// fault and maps to HTTP 400 (common/api-route.ts httpStatusOf).
// Messages say what was expected and what arrived.

import { CodedError } from '../common/errors';

export type IpamErrorCode =
  | 'config'        // bad option, argument or request (HTTP 400)
  | 'decode'        // malformed bytes from a peer or from disk
  | 'limit'         // a peer-supplied count or size over our limit
  | 'foreign-range' // a ring or consensus message for another address range
  | 'foreign-seed'  // a ring created independently of ours (different initial peers)
  | 'invalid-ring'  // well-formed bytes describing an impossible ring (split of our range, ...)
  | 'auth'          // a ring entry whose signatures do not hold (forged, or altered on the way)
  | 'conflict'      // an address held by another container, or consensus settings that disagree
  | 'full'          // no free address left in the requested range
  | 'timeout'       // waited too long (consensus, space from another peer)
  | 'shutdown'      // IPAM stopped while a request was waiting
  | 'io';           // persistence failed

export class IpamError extends CodedError<IpamErrorCode> {
  override readonly name = 'IpamError';

  static config(message: string): IpamError {
    return new IpamError('config', message);
  }

  static decode(what: string, detail: string, cause?: unknown): IpamError {
    return new IpamError('decode', `malformed ${what}: ${detail}`, cause === undefined ? undefined : { cause });
  }

  static limit(what: string, got: number, max: number): IpamError {
    return new IpamError('limit', `${what} is ${got}, over the limit of ${max}`);
  }
}
