// One error class for dns/, carrying a stable code. Callers branch
// on `code`, never on message text. 'config' is the caller's fault: the HTTP
// API answers it with 400 (common/api-route.ts httpStatusOf).

import { CodedError } from '../common/errors';

export type DnsErrorCode =
  | 'config'   // bad option, argument or API request
  | 'decode'   // malformed bytes from a peer
  | 'limit'    // a peer-supplied size or count over our limit
  | 'version'  // a gossip message in a format version we do not know
  | 'auth'     // a gossip entry not signed by the peer it names as its origin
  | 'io';      // sockets, files, host commands

export class DnsError extends CodedError<DnsErrorCode> {
  override readonly name = 'DnsError';

  static config(message: string): DnsError {
    return new DnsError('config', message);
  }

  static decode(what: string, detail: string): DnsError {
    return new DnsError('decode', `malformed ${what}: ${detail}`);
  }

  static limit(what: string, got: number, max: number): DnsError {
    return new DnsError('limit', `${what} is ${got}, over the limit of ${max}`);
  }

  static io(message: string, cause?: unknown): DnsError {
    return new DnsError('io', message, cause === undefined ? undefined : { cause });
  }
}
