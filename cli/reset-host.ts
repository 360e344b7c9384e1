// `weave reset`, the host's part: asking the router to remove what it made on
// the host (POST /reset/host: the parts' reset hooks now, such as the Docker
// plugin's network, and the bridge with its rules when it stops), the state
// files that describe host state, and, when the router is not running, the
// bridge itself. cli/expose-commands.ts runs the reset and calls these.
//
// It keeps the peer's identity (peer-key, peer-name, incarnation): a reset
// leaves the mesh, and the same host coming back is the same peer with a
// larger incarnation, not a stranger (docs/architecture.md, state on disk).

import type { ApiClient } from './api-client';
import { ExecCommandRunner } from '../router/host/command-runner';
import { DEFAULT_BRIDGE, removeBridge } from '../router/host/host-bridge';
import type { HostResetReply } from '../router/host/host-reset';
import { STATE_FILE as CONTAINERS_FILE } from '../router/host/container-state';
import { CNI_STATE_FILE } from '../router/host/cni-state';
import { EXPOSE_STATE_FILE } from '../router/host/expose-state';
import { sanitiseText } from './render-status';
import { errorMessage } from '../common/errors';

/**
 * State files of host state, gone with the host state at a reset (besides
 * IPAM's and the peer list). DNS's name is loaded on demand: dns/daemon.ts
 * brings the whole DNS server, which no other command needs.
 */
export async function hostStateFiles(): Promise<string[]> {
  const { RESOLV_BACKUP_FILE } = await import('../dns/daemon');
  return [CONTAINERS_FILE, CNI_STATE_FILE, EXPOSE_STATE_FILE, RESOLV_BACKUP_FILE];
}

/**
 * Asks the running router to remove what it made on the host; prints what it
 * could not. A router that cannot (an older version) does not stop the reset:
 * the note says what is left.
 */
export async function requestHostReset(client: ApiClient, note: (text: string) => void): Promise<void> {
  let r: HostResetReply;
  try {
    r = await client.post<HostResetReply>('/reset/host', {});
  } catch (err) {
    note(`the router did not remove what it made on this host (${errorMessage(err)}); once it has stopped: ip link del ${DEFAULT_BRIDGE}`);
    return;
  }
  for (const name of r.done) note(`removed what ${sanitiseText(name)} made on this host`);
  for (const f of r.failed) note(`could not remove what ${sanitiseText(f.name)} made: ${sanitiseText(f.error)}`);
}

/** With no router to ask: the bridge and its forward rules, by the CLI itself. */
export async function removeBridgeWithoutRouter(note: (text: string) => void): Promise<void> {
  try {
    await removeBridge({ bridge: DEFAULT_BRIDGE }, new ExecCommandRunner());
  } catch (err) {
    note(`could not remove the bridge ${DEFAULT_BRIDGE}: ${errorMessage(err)} (ip link del ${DEFAULT_BRIDGE})`);
  }
}
