// What the local HTTP API may ask of a running router. The API adapter depends
// on this interface only, so it can be tested against a fake.

import type { RouterStatus } from '../mesh/status';

export interface RouterControl {
  status(): RouterStatus;
  /** Adds targets (host[:port]); with replace, direct targets not listed are dropped. Throws RouterError('config') on a bad address, before changing anything. */
  connect(addresses: string[], replace: boolean): void;
  /** Removes direct targets and closes connections to them. Throws RouterError('config') on a bad address, before changing anything. */
  forget(addresses: string[]): void;
  /** Stops the daemon after the HTTP reply has been sent. */
  stop(): void;
}
