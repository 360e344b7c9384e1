// One error class for the router, carrying a stable code. Callers branch on
// `code`, never on message text. Data-path code returns drop reasons instead of
// throwing; this is for configuration, protocol and API errors.

import { CodedError } from '../../common/errors';

export type RouterErrorCode =
  | 'config'            // bad option or argument
  | 'decode'            // malformed bytes from a peer
  | 'limit'             // a peer-supplied size or count over our limit
  | 'version'           // no protocol version in common
  | 'password-mismatch' // both have a password but they differ (or tampering)
  | 'password-local-only'
  | 'password-remote-only'
  | 'peer-key'          // the peer did not prove the key its name derives from (handshake)
  | 'replay'            // counter out of order on an ordered channel
  | 'auth'              // authentication of a message failed
  | 'self-connection'
  | 'name-collision'
  | 'duplicate-connection'
  | 'conn-limit'
  | 'heartbeat-timeout'
  | 'rekey'             // a key rotation did not complete in time
  | 'closed'
  | 'io';

export class RouterError extends CodedError<RouterErrorCode> {
  override readonly name = 'RouterError';

  static config(message: string): RouterError {
    return new RouterError('config', message);
  }

  static decode(what: string, detail: string): RouterError {
    return new RouterError('decode', `malformed ${what}: ${detail}`);
  }

  static limit(what: string, got: number, max: number): RouterError {
    return new RouterError('limit', `${what} is ${got}, over the limit of ${max}`);
  }
}
