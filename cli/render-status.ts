// Human rendering of a RouterStatus: `weave status` and its peers, connections
// and targets views, laid out like Weave Net's. Pure functions of the snapshot
// (time comes in as an argument), shared by the CLI and the status port.
// Nicknames, addresses and failure reasons partly come from remote peers, so
// every such string is stripped of control characters before it reaches a
// terminal: a peer must not be able to send escape sequences to an operator.

import type { RouterErrorCode } from '../router/mesh/errors';
import type { ConnectionStatus, HandshakePressure, PeerStatus, RouterStatus, TargetStatus } from '../router/mesh/status';
import type { PortGuardStatus } from '../router/host/port-security';

/** Replaces control and bidi-override characters with visible escapes. */
export function sanitiseText(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

function nameWithNick(name: string, nickname: string | null): string {
  return nickname === null || nickname === '' ? sanitiseText(name) : `${sanitiseText(name)}(${sanitiseText(nickname)})`;
}

function plural(n: number, one: string, many = one + 's'): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** Pads column `i` of every row to its widest cell (the last column is never padded). */
function columns(rows: string[][], indent = ''): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => {
      if (i < row.length - 1) widths[i] = Math.max(widths[i] ?? 0, cell.length);
    });
  }
  return rows
    .map((row) => indent + row.map((cell, i) => (i < row.length - 1 ? cell.padEnd(widths[i] ?? 0) : cell)).join('  ').trimEnd())
    .map((line) => line + '\n')
    .join('');
}

const LABEL_WIDTH = 15;

function field(label: string, value: string): string {
  return `${label.padStart(LABEL_WIDTH)}: ${value}\n`;
}

function continuation(text: string): string {
  return `${' '.repeat(LABEL_WIDTH + 2)}${text}\n`;
}

function isPending(c: ConnectionStatus): boolean {
  return c.state === 'connecting' || c.state === 'handshaking';
}

/** A line another subsystem adds to the overview (IPAM, DNS), already rendered. */
export interface StatusLine {
  label: string;
  value: string;
}

/**
 * The overview printed by `weave status`. `services` are the lines of the
 * subsystems beside the router (IPAM, DNS), shown before the health list;
 * the status port renders the router alone.
 */
export function renderStatus(status: RouterStatus & { portSecurity?: Pick<PortGuardStatus, 'ports' | 'unguarded'> | null }, services: readonly StatusLine[] = []): string {
  let out = '\n';
  out += field('Version', sanitiseText(status.version));
  out += '\n';
  out += field('Service', 'router');
  out += field('Name', nameWithNick(status.name, status.nickname));
  out += field('Port', String(status.port));
  if (status.encryption) {
    out += field('Encryption', 'enabled');
    if (status.passwordRoll) {
      // The roll is done once no peer needs the old password: then relaunch without --old-password.
      const old = status.connections.filter((c) => c.state === 'established' && c.oldPassword);
      out += continuation(old.length === 0
        ? 'password roll: every connected peer uses the new password'
        : `password roll: ${plural(old.length, 'peer')} still on the old password: ${old.map((c) => nameWithNick(c.peer ?? '-', c.nickname)).join(', ')}`);
    }
  } else {
    // Loud on purpose (docs/architecture.md): plaintext is a legitimate choice, never a silent one.
    out += field('Encryption', 'DISABLED');
    out += continuation('*** WARNING: this mesh is UNENCRYPTED: anyone on the path can read and inject its traffic.');
    out += continuation('*** Launch every peer with --password (or WEAVE_PASSWORD) to encrypt it.');
  }
  out += field('PeerDiscovery', status.discovery ? 'enabled' : 'disabled');
  // The daemon's status adds port security (cli/daemon-health.ts); a bare router's has none.
  const ps = status.portSecurity;
  if (ps !== undefined) {
    out += field('PortSecurity', ps === null ? 'disabled (--no-port-security): containers may send as any MAC or address'
      : `enabled, ${plural(ps.ports, 'container port')} guarded${ps.unguarded > 0 ? `, ${ps.unguarded} let through (attached with port security off)` : ''}`);
  }
  out += field('Targets', String(status.targets.length));

  const established = status.connections.filter((c) => c.state === 'established').length;
  const failed = status.connections.filter((c) => c.state === 'failed').length;
  const pending = status.connections.filter(isPending).length;
  const parts: string[] = [];
  if (established > 0) parts.push(`${established} established`);
  if (pending > 0) parts.push(`${pending} connecting`);
  if (failed > 0) parts.push(`${failed} failed`);
  out += field('Connections', `${status.connections.length}${parts.length > 0 ? ` (${parts.join(', ')})` : ''}`);
  out += field('ConnLimit', String(status.connLimit));
  const hs = status.handshakes;
  if (hs !== undefined && (hs.inProgress > 0 || hs.droppedLastMinute > 0)) out += field('Handshakes', handshakesLine(hs));

  // As Weave Net counts them: established connections across the whole topology
  // (each direction reported by its owner), a quick check that the mesh is whole.
  const meshConns = status.peers.reduce((n, p) => n + p.connections.filter((c) => c.established).length, 0);
  const unreachable = status.peers.filter((p) => !p.reachable).length;
  out += field(
    'Peers',
    `${status.peers.length} (with ${plural(meshConns, 'established connection')}` +
      `${unreachable > 0 ? `, ${unreachable} unreachable` : ''})`,
  );
  if (status.channels.length > 0) out += field('Channels', status.channels.map(sanitiseText).join(', '));
  if (status.dataPlane) {
    const dp = status.dataPlane;
    out += field('DataPlane', `bridge ${sanitiseText(dp.bridge)}, MTU ${dp.mtu}, ${sanitiseText(dp.aead)}, ${plural(dp.macs, 'MAC')} learnt`);
    const f = dp.fastdp;
    if (f) out += field('FastPath', f.on ? `on (${sanitiseText(f.reason)}): ${plural(f.peers, 'peer')}, ${plural(f.fdbEntries, 'forwarding entry', 'forwarding entries')}` : `off: ${sanitiseText(f.reason)}`);
    const k = dp.kernelRelay;
    if (k) {
      const paths = k.paths.map((p) => `${sanitiseText(p.peer)} via ${sanitiseText(p.via)} (${p.inUse ? 'in use' : 'probing'})`);
      out += field('KernelRelay', `${k.grants ? `grants, ${plural(k.pairs, 'pair')} forwarded here` : 'grants none'}; ${paths.length > 0 ? paths.join(', ') : 'no paths through others'}`);
    }
  }
  for (const line of services) out += field(sanitiseText(line.label), sanitiseText(line.value));

  if (status.health.length === 0) {
    out += field('Health', 'ok');
  } else {
    out += field('Health', plural(status.health.length, 'warning'));
    for (const h of status.health) {
      out += continuation(`[${h.severity}] ${sanitiseText(h.code)}: ${sanitiseText(h.text)}`);
    }
  }
  return out;
}

/** Inbound handshakes from peers not yet authenticated: "64/64 in progress, 1234 dropped in the last minute (...)". */
function handshakesLine(h: HandshakePressure): string {
  const atCap = h.evictedLastMinute > 0 ? ` (${h.evictedLastMinute} at the cap, ${h.maxPerSource} per source)` : '';
  return `${h.inProgress}/${h.maxInProgress} in progress, ${h.droppedLastMinute} dropped in the last minute${atCap}`;
}

/**
 * What a failed connection's third column says instead of its encryption: a
 * handshake refused over the password is not an unencrypted peer.
 */
const FAILURE_LABEL: Partial<Record<RouterErrorCode, string>> = {
  'password-mismatch': 'refused: wrong password',
  'password-local-only': 'refused: peer has no password',
  'password-remote-only': 'refused: we have no password',
  version: 'refused: no common version',
  'name-collision': 'refused: name in use',
  'peer-key': 'refused: key not proven',
  'conn-limit': 'refused: limit reached',
  'heartbeat-timeout': 'timed out',
  closed: 'closed',
  io: 'network error',
  decode: 'protocol error',
  limit: 'protocol error',
  auth: 'protocol error',
  replay: 'protocol error',
  rekey: 'rekey stalled',
};

function encryptionColumn(c: ConnectionStatus): string {
  if (c.state !== 'failed') {
    if (!c.encrypted) return 'unencrypted';
    // The key epoch and its age once established, and whether the peer still uses the old password.
    const parts = [c.cipher !== undefined ? `encrypted (${c.cipher})` : 'encrypted'];
    if (c.keyEpoch !== undefined) parts.push(`key epoch ${c.keyEpoch} (${Math.round((c.keyAgeMs ?? 0) / 1000)}s old)`);
    if (c.oldPassword) parts.push('OLD PASSWORD');
    return parts.join(', ');
  }
  return (c.failure !== undefined ? FAILURE_LABEL[c.failure] : undefined) ?? '-';
}

function arrow(outbound: boolean): string {
  return outbound ? '->' : '<-';
}

/** `weave status connections`: one line per connection of this router. */
export function renderConnections(status: RouterStatus): string {
  const rows = status.connections.map((c) => [
    `${arrow(c.outbound)} ${sanitiseText(c.address)}`,
    c.state,
    encryptionColumn(c),
    c.peer === null ? '-' : nameWithNick(c.peer, c.nickname),
    // How frames travel to that peer (UDP sleeve or the TCP fallback) and why; else the failure reason.
    c.dataPath ? `data: ${c.dataPath} (${sanitiseText(c.dataPathInfo ?? '')})` : sanitiseText(c.info),
  ]);
  return columns(rows);
}

/** `weave status peers`: every peer in the topology with the connections it reports. */
export function renderPeers(status: RouterStatus): string {
  const nick = new Map<string, string>(status.peers.map((p: PeerStatus) => [p.name, p.nickname]));
  let out = '';
  for (const p of status.peers) {
    const flags: string[] = [];
    if (p.name === status.name) flags.push('this peer');
    if (!p.reachable) flags.push('unreachable');
    out += `${nameWithNick(p.name, p.nickname)}${flags.length > 0 ? `  [${flags.join(', ')}]` : ''}\n`;
    const rows = p.connections.map((c) => [
      `${arrow(c.outbound)} ${sanitiseText(c.address)}`,
      nameWithNick(c.name, nick.get(c.name) ?? null),
      c.established ? 'established' : 'pending',
    ]);
    out += columns(rows, '   ');
  }
  return out;
}

export interface RenderTargetsOptions {
  /** Current time, to show retries as "in 12s"; without it they are shown as ISO times. */
  nowMs?: number;
}

function when(ms: number, nowMs: number | undefined): string {
  if (nowMs === undefined) return `at ${new Date(ms).toISOString()}`;
  const secs = Math.max(0, Math.round((ms - nowMs) / 1000));
  return `in ${secs}s`;
}

/** `weave status targets`: the addresses this router keeps connecting to. */
export function renderTargets(status: RouterStatus, opts: RenderTargetsOptions = {}): string {
  const rows = status.targets.map((t: TargetStatus) => {
    const detail: string[] = [];
    if (!t.direct) detail.push('discovered');
    if (t.attempts > 0 && t.state !== 'connected') detail.push(`${plural(t.attempts, 'attempt')}`);
    if (t.nextAttemptMs !== null && t.state !== 'connected') detail.push(`next ${when(t.nextAttemptMs, opts.nowMs)}`);
    if (t.lastError !== '' && t.state !== 'connected') detail.push(`last error: ${sanitiseText(t.lastError)}`);
    return [sanitiseText(t.address), t.state, detail.join(', ')];
  });
  return columns(rows);
}
