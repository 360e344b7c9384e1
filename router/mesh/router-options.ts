// What a Router is given: its injected dependencies (clock, rng, logger,
// transport, data plane) and its options (identity, password keys, rekeying,
// limits, timings). Kept apart from router.ts so the composition root and the
// simulations can read what a router needs without the router itself.

import type { Clock } from '../../common/clock';
import type { Logger } from '../../common/logger';
import type { Rng } from '../../common/rng';
import type { RouterTimings } from './constants';
import type { DataPlane } from './data-plane';
import type { RekeyOptions } from './key-schedule';
import type { PeerKey } from './peer-key';
import type { PeerName } from './peer-name';
import type { VerifiedSignatures } from './signed-gossip';
import type { Transport } from './transport';

export interface RouterDeps {
  clock: Clock;
  rng: Rng;
  logger: Logger;
  transport: Transport;
  /** The frame-carrying side (overlay.ts); absent in control-plane-only routers and most simulations. */
  dataPlane?: DataPlane;
  /** Verified signatures shared by the routers of one process (simulations); by default the router keeps its own. */
  verifiedSignatures?: VerifiedSignatures;
}

export interface RouterOptions {
  name: PeerName;
  nickname: string;
  /** Larger on every start of the same peer (restart detection). */
  incarnation: number;
  port: number;
  /** Stretched password, or null for a plaintext mesh. */
  passwordKey: Uint8Array | null;
  /** During a password roll: the old password, still accepted (status lists the peers that use it). */
  oldPasswordKey?: Uint8Array | null;
  /** When connection keys rotate; defaults to DEFAULT_REKEY_OPTIONS (key-schedule.ts). */
  rekey?: RekeyOptions;
  /** Our signing key; `name` must be the name it derives (router/mesh/peer-key.ts). */
  key: PeerKey;
  discovery: boolean;
  connLimit: number;
  timings: RouterTimings;
  version: string;
  /** Called when the user-given targets change, to persist them. */
  onDirectTargetsChanged?: (addresses: string[]) => void;
}
