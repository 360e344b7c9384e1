// `weave reset`, the host's part: asking the router to remove what it made on
// the host (POST /reset/host: the parts' reset hooks now, such as the Docker
// plugin's network, and the bridge with its rules when it stops), the state
// files that describe host state, and, when the router is not running, the
// bridge itself; and last the data directory: every file weave keeps there
// (the peer's identity, logs, pid files, set-aside corrupt copies), then the
// directory itself when nothing else is in it. Only files weave makes are
// deleted, by name: --datadir may point at a directory that holds the
// user's own files too. cli/expose-commands.ts runs the reset and calls these.
//
// A host launched again after a reset is a new peer (a new key, so a new
// name): its old name's space was handed over and the mesh forgets the name
// as it does any peer that left (docs/architecture.md, state on disk).

import type { ApiClient } from './api-client';
import { ExecCommandRunner } from '../router/host/command-runner';
import { DEFAULT_BRIDGE, removeBridge } from '../router/host/host-bridge';
import { removeFastdpLeftovers } from '../router/host/fastdp-firewall';
import { removeKernelRelayTable } from '../router/host/kernel-relay-rules';
import { removePortSecurity } from '../router/host/port-security';
import type { HostResetReply } from '../router/host/host-reset';
import { STATE_FILE as CONTAINERS_FILE } from '../router/host/container-state';
import { CNI_STATE_FILE } from '../router/host/cni-state';
import { EXPOSE_STATE_FILE } from '../router/host/expose-state';
import { PLUGIN_STATE_FILE } from '../router/host/docker-plugin-state';
import { INCARNATION_FILE, KEY_FILE, NAME_FILE, PINS_FILE } from '../router/mesh/identity';
import fs from 'node:fs';
import path from 'node:path';
import { LOG_FILE, PID_FILE } from './launch';
import { SUPERVISOR_PID_FILE } from './supervisor';
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

/** With no router to ask: the bridge and its forward rules, port security's table, and what a crashed fast path or kernel relay left, by the CLI itself. */
export async function removeBridgeWithoutRouter(note: (text: string) => void): Promise<void> {
  const runner = new ExecCommandRunner();
  await removeFastdpLeftovers(runner);
  await removeKernelRelayTable(runner);
  await removePortSecurity(runner);
  try {
    await removeBridge({ bridge: DEFAULT_BRIDGE }, runner);
  } catch (err) {
    note(`could not remove the bridge ${DEFAULT_BRIDGE}: ${errorMessage(err)} (ip link del ${DEFAULT_BRIDGE})`);
  }
}

/** Files weave keeps in its data directory besides the state files above. */
const OWN_FILES: readonly string[] = [KEY_FILE, NAME_FILE, INCARNATION_FILE, PINS_FILE, LOG_FILE, PID_FILE, SUPERVISOR_PID_FILE, PLUGIN_STATE_FILE];
/** Set-aside corrupt copies (common/files.ts) and temporaries of an interrupted atomic write. */
const OWN_PATTERN = /\.(corrupt-\d{8}T\d{6}|tmp-\d+-\d+)/;

/**
 * Deletes what is left of weave in `datadir` after the state files (call it
 * once the router has stopped), then the directory when it is empty; says
 * what it kept and why. Returns whether the directory is gone.
 */
export function removeDataDirectory(datadir: string, note: (text: string) => void): boolean {
  let names: string[];
  try {
    names = fs.readdirSync(datadir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
    note(`cannot read ${datadir}: ${errorMessage(err)}`);
    return false;
  }
  const foreign: string[] = [];
  for (const name of names) {
    if (!OWN_FILES.includes(name) && !OWN_PATTERN.test(name)) {
      foreign.push(name);
      continue;
    }
    try {
      fs.rmSync(path.join(datadir, name), { force: true });
    } catch (err) {
      note(`cannot remove ${path.join(datadir, name)}: ${errorMessage(err)}`);
      foreign.push(name);
    }
  }
  if (foreign.length > 0) {
    const shown = foreign.slice(0, 5).map((n) => sanitiseText(n)).join(', ') + (foreign.length > 5 ? ', ...' : '');
    note(`kept ${datadir}: it holds files weave did not make (${shown})`);
    return false;
  }
  try {
    fs.rmdirSync(datadir);
    return true;
  } catch (err) {
    note(`cannot remove ${datadir}: ${errorMessage(err)}`);
    return false;
  }
}
