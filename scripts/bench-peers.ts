// Reference overlays for scripts/bench: wireguard-go, tinc (switch mode),
// nebula and fastd (TAP mode), each set up between two hosts of a SimNetwork with the Debian
// packages' binaries and default crypto. It owns: the configuration and key
// files it writes under the network's temporary directory, the daemons it
// starts inside the host namespaces (tracked by SimNetwork, so destroy() stops
// them) and the TUN/TAP devices those daemons create there (they vanish with
// the daemons and the namespaces). wireguard-go's control sockets live in the
// shared /var/run/wireguard, so interface names carry the run's unique tag and
// removeWireguardSockets() deletes whatever a killed daemon left behind.
//
// It must never send traffic outside the network's namespaces: every endpoint
// is an underlay address of one of its hosts, and no overlay has a lighthouse,
// discovery or relay pointing anywhere else.

import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Overlay } from './bench-measure';
import { run } from './command';
import type { SimHost } from './sim-host';
import type { SimNetwork } from './sim-network';
import { waitFor } from './wait';

/** What a reference overlay's setup hands the bench; the bench adds the name, label and hosts. */
export type OverlayEndpoints = Omit<Overlay, 'name' | 'label' | 'hosts'>;

/** A reference overlay the bench can set up. */
export interface PeerOverlay {
  /** Short name used by --overlays and in the tables. */
  name: string;
  /** Binaries that must be installed (Debian package in parentheses, for the message). */
  needs: { bin: string; pkg: string }[];
  setup(net: SimNetwork, a: SimHost, b: SimHost, tag: string): Promise<OverlayEndpoints>;
}

// Tunnel subnets: any private /24 works, since they exist only inside our namespaces.
const WG_SUBNET = '10.99.0';
const TINC_SUBNET = '10.98.0';
const NEBULA_SUBNET = '10.97.0';
const WG_PORT = 51820;
const TINC_PORT = 655;
const NEBULA_PORT = 4242;
const FASTD_SUBNET = '10.96.0';
const FASTD_PORT = 10000;
const DEVICE_WAIT_MS = 15_000;
export const WIREGUARD_SOCKET_DIR = '/var/run/wireguard';

async function check(h: SimHost, argv: string[], input?: string): Promise<string> {
  const r = await h.exec(argv, { check: true, timeoutMs: 20_000, ...(input !== undefined ? { input } : {}) });
  return r.stdout;
}

async function linkMtu(h: SimHost, ifname: string): Promise<number> {
  const out = await check(h, ['ip', '-j', 'link', 'show', ifname]);
  return (JSON.parse(out) as { mtu: number }[])[0]?.mtu ?? 0;
}

/** Waits until `ifname` exists in h's namespace; the daemon's output goes into the timeout error. */
async function waitForLink(h: SimHost, ifname: string, daemon: { stderr: string; stdout: string; running: boolean }): Promise<void> {
  await waitFor(async () => {
    if (!daemon.running) throw new Error(`daemon exited: ${daemon.stderr.trim() || daemon.stdout.trim()}`);
    return (await h.exec(['ip', 'link', 'show', ifname], { timeoutMs: 5_000 })).code === 0;
  }, { what: `${ifname} in ${h.ns}`, timeoutMs: DEVICE_WAIT_MS, intervalMs: 100, detail: () => daemon.stderr.slice(-2000) });
}

function hostIndex(net: SimNetwork, h: SimHost): number {
  return net.hosts.indexOf(h) + 1;
}

function workDir(net: SimNetwork, name: string): string {
  const dir = join(net.rootDir, `bench-${name}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

function firstLine(text: string): string {
  return text.split('\n').map((l) => l.trim()).find((l) => l !== '') ?? '?';
}

/** Gives h its address in `subnet` on the tunnel interface and brings it up. */
async function addressTunnel(net: SimNetwork, h: SimHost, ifname: string, subnet: string): Promise<void> {
  await check(h, ['ip', 'addr', 'add', `${subnet}.${hostIndex(net, h)}/24`, 'dev', ifname]);
  await check(h, ['ip', 'link', 'set', ifname, 'up']);
}

/** What every reference measures: host a to host b over their tunnel interfaces, addresses `subnet`.N. */
async function hostToHost(net: SimNetwork, a: SimHost, b: SimHost, how: {
  ifname: string; subnet: string; version: string; device: string; cipher: string; daemon: string;
}): Promise<OverlayEndpoints> {
  const serverAddress = `${how.subnet}.${hostIndex(net, b)}`;
  return {
    clientNs: a.ns,
    serverNs: b.ns,
    serverAddress,
    mtu: await linkMtu(a, how.ifname),
    version: how.version,
    path: `host ${a.name} -> host ${b.name} over ${how.device}, ${how.subnet}.${hostIndex(net, a)} -> ${serverAddress}, ${how.cipher}`,
    isDaemon: (cmd) => (cmd[0] ?? '').endsWith(how.daemon),
  };
}

// ---------------------------------------------------------------------------
// wireguard-go: host to host over a wg interface (layer 3)

/** Interface names that `setup` handed to wireguard-go in this process, for socket cleanup. */
const wireguardIfnames = new Set<string>();

/** Deletes control sockets our wireguard-go daemons left in /var/run/wireguard (a killed daemon cannot). */
export function removeWireguardSockets(): void {
  for (const ifname of wireguardIfnames) rmSync(join(WIREGUARD_SOCKET_DIR, `${ifname}.sock`), { force: true });
}

export const wireguard: PeerOverlay = {
  name: 'wireguard-go',
  needs: [{ bin: 'wireguard-go', pkg: 'wireguard-go' }, { bin: 'wg', pkg: 'wireguard-tools' }],
  async setup(net, a, b, tag) {
    const dir = workDir(net, 'wireguard');
    const hosts = [a, b];
    const keys = await Promise.all(hosts.map(async () => {
      const priv = (await run(['wg', 'genkey'], { check: true })).stdout.trim();
      const pub = (await run(['wg', 'pubkey'], { check: true, input: `${priv}\n` })).stdout.trim();
      return { priv, pub };
    }));
    // Interface names are global in /var/run/wireguard: the run's tag keeps them apart.
    const ifnames = hosts.map((h) => `wg${tag}${h.name}`.slice(0, 15));
    for (let i = 0; i < hosts.length; i++) {
      const h = hosts[i]!;
      const ifname = ifnames[i]!;
      if (existsSync(join(WIREGUARD_SOCKET_DIR, `${ifname}.sock`))) throw new Error(`${WIREGUARD_SOCKET_DIR}/${ifname}.sock already exists`);
      wireguardIfnames.add(ifname);
      const daemon = h.spawn(['wireguard-go', ifname], { env: { WG_PROCESS_FOREGROUND: '1', LOG_LEVEL: 'error' } });
      await waitForLink(h, ifname, daemon);
    }
    for (let i = 0; i < hosts.length; i++) {
      const h = hosts[i]!;
      const peer = hosts[1 - i]!;
      const keyFile = join(dir, `${h.name}.key`);
      writeFileSync(keyFile, `${keys[i]!.priv}\n`, { mode: 0o600 });
      await check(h, ['wg', 'set', ifnames[i]!, 'listen-port', String(WG_PORT), 'private-key', keyFile,
        'peer', keys[1 - i]!.pub, 'allowed-ips', `${WG_SUBNET}.${hostIndex(net, peer)}/32`, 'endpoint', `${peer.address}:${WG_PORT}`]);
      await addressTunnel(net, h, ifnames[i]!, WG_SUBNET);
    }
    return hostToHost(net, a, b, {
      ifname: ifnames[0]!, subnet: WG_SUBNET, version: firstLine((await run(['wireguard-go', '--version'])).stdout),
      device: `wireguard-go TUN ${ifnames[0]} (L3)`, cipher: 'ChaCha20-Poly1305', daemon: 'wireguard-go',
    });
  },
};

// ---------------------------------------------------------------------------
// tinc 1.0: switch mode (layer 2 like us), host to host over its TAP

export const tinc: PeerOverlay = {
  name: 'tinc',
  needs: [{ bin: 'tincd', pkg: 'tinc' }],
  async setup(net, a, b, tag) {
    const hosts = [a, b];
    const dirs = hosts.map((h) => workDir(net, `tinc-${h.name}`));
    const ifnames = hosts.map((h) => `tc${tag}${h.name}`.slice(0, 15));
    for (let i = 0; i < hosts.length; i++) {
      const h = hosts[i]!;
      const d = dirs[i]!;
      mkdirSync(join(d, 'hosts'), { recursive: true });
      writeFileSync(join(d, 'tinc.conf'), [
        `Name = ${h.name}`, 'Mode = switch', 'Device = /dev/net/tun', `Interface = ${ifnames[i]}`, 'AddressFamily = ipv4',
        `Port = ${TINC_PORT}`, ...(i > 0 ? [`ConnectTo = ${a.name}`] : []), '',
      ].join('\n'));
      // Cipher and digest are per-host settings; AES-256-CBC + HMAC-SHA256 instead of 1.0's Blowfish default.
      writeFileSync(join(d, 'hosts', h.name), [`Address = ${h.address}`, `Port = ${TINC_PORT}`, 'Cipher = aes-256-cbc', 'Digest = sha256', ''].join('\n'));
      // Appends the public key to hosts/NAME; asks nothing when stdin is not a terminal.
      const r = await run(['tincd', '-c', d, '-K2048'], { timeoutMs: 30_000 });
      if (r.code !== 0) throw new Error(`tincd -K failed: ${r.stderr.trim()}`);
    }
    for (let i = 0; i < hosts.length; i++) {
      const other = hosts[1 - i]!;
      writeFileSync(join(dirs[i]!, 'hosts', other.name), readFileSync(join(dirs[1 - i]!, 'hosts', other.name)));
    }
    for (let i = 0; i < hosts.length; i++) {
      const h = hosts[i]!;
      const d = dirs[i]!;
      const daemon = h.spawn(['tincd', '-c', d, '-D', '-d0', `--pidfile=${join(d, 'tinc.pid')}`]);
      await waitForLink(h, ifnames[i]!, daemon);
      await addressTunnel(net, h, ifnames[i]!, TINC_SUBNET);
    }
    return hostToHost(net, a, b, {
      ifname: ifnames[0]!, subnet: TINC_SUBNET, version: firstLine((await run(['tincd', '--version'])).stdout),
      device: `tinc TAP ${ifnames[0]} (L2 switch mode)`, cipher: 'AES-256-CBC + HMAC-SHA256', daemon: 'tincd',
    });
  },
};

// ---------------------------------------------------------------------------
// nebula: host to host over its TUN, static host map, no lighthouse

export const nebula: PeerOverlay = {
  name: 'nebula',
  needs: [{ bin: 'nebula', pkg: 'nebula' }, { bin: 'nebula-cert', pkg: 'nebula' }],
  async setup(net, a, b, tag) {
    const dir = workDir(net, 'nebula');
    const hosts = [a, b];
    const ifnames = hosts.map((h) => `nb${tag}${h.name}`.slice(0, 15));
    const ca = { crt: join(dir, 'ca.crt'), key: join(dir, 'ca.key') };
    await run(['nebula-cert', 'ca', '-name', `weave-bench-${tag}`, '-duration', '24h', '-out-crt', ca.crt, '-out-key', ca.key], { check: true });
    const staticMap = hosts.map((h) => `  "${NEBULA_SUBNET}.${hostIndex(net, h)}": ["${h.address}:${NEBULA_PORT}"]`).join('\n');
    for (let i = 0; i < hosts.length; i++) {
      const h = hosts[i]!;
      const crt = join(dir, `${h.name}.crt`);
      const key = join(dir, `${h.name}.key`);
      await run(['nebula-cert', 'sign', '-ca-crt', ca.crt, '-ca-key', ca.key, '-name', h.name,
        '-ip', `${NEBULA_SUBNET}.${hostIndex(net, h)}/24`, '-out-crt', crt, '-out-key', key], { check: true });
      const config = join(dir, `${h.name}.yml`);
      // JSON-style flow values keep the YAML unambiguous.
      writeFileSync(config, [
        'pki:', `  ca: "${ca.crt}"`, `  cert: "${crt}"`, `  key: "${key}"`,
        'static_host_map:', staticMap,
        'lighthouse:', '  am_lighthouse: false', '  hosts: []',
        'listen:', `  host: "${h.address}"`, `  port: ${NEBULA_PORT}`,
        'punchy:', '  punch: false',
        'relay:', '  use_relays: false',
        'tun:', '  disabled: false', `  dev: ${ifnames[i]}`, '  mtu: 1300',
        'logging:', '  level: warning',
        'firewall:',
        '  outbound:', '    - {port: any, proto: any, host: any}',
        '  inbound:', '    - {port: any, proto: any, host: any}',
        '',
      ].join('\n'));
      const daemon = h.spawn(['nebula', '-config', config]);
      await waitForLink(h, ifnames[i]!, daemon);
    }
    return hostToHost(net, a, b, {
      ifname: ifnames[0]!, subnet: NEBULA_SUBNET,
      version: `nebula ${firstLine((await run(['nebula', '-version'])).stdout).replace(/^Version:\s*/, '')}`,
      device: `nebula TUN ${ifnames[0]} (L3)`, cipher: 'AES-256-GCM', daemon: 'nebula',
    });
  },
};

// ---------------------------------------------------------------------------
// fastd: TAP mode (layer 2 like us), host to host, as Freifunk runs it

export const fastd: PeerOverlay = {
  name: 'fastd',
  needs: [{ bin: 'fastd', pkg: 'fastd' }],
  async setup(net, a, b, tag) {
    const dir = workDir(net, 'fastd');
    const hosts = [a, b];
    const ifnames = hosts.map((h) => `fd${tag}${h.name}`.slice(0, 15));
    const keys = await Promise.all(hosts.map(async () => {
      const secret = (await run(['fastd', '--generate-key', '--machine-readable'], { check: true })).stdout.trim();
      const pub = (await run(['fastd', '--config', '-', '--show-key', '--machine-readable'], { check: true, input: `secret "${secret}";\n` })).stdout.trim();
      if (!/^[0-9a-f]{64}$/.test(secret) || !/^[0-9a-f]{64}$/.test(pub)) throw new Error('fastd --generate-key / --show-key printed no key pair');
      return { secret, pub };
    }));
    // salsa2012+umac: the method fastd's documentation recommends and Freifunk
    // networks run; MTU 1426: fastd's documented value for TAP mode over IPv4
    // on a 1500-byte underlay.
    for (let i = 0; i < hosts.length; i++) {
      const h = hosts[i]!;
      const peer = hosts[1 - i]!;
      const config = join(dir, `${h.name}.conf`);
      writeFileSync(config, [
        'log level warn;', 'mode tap;', `interface "${ifnames[i]}";`, 'method "salsa2012+umac";', 'mtu 1426;',
        `bind ${h.address}:${FASTD_PORT};`, `secret "${keys[i]!.secret}";`,
        `peer "${peer.name}" {`, `  key "${keys[1 - i]!.pub}";`, `  remote ${peer.address}:${FASTD_PORT};`, '}', '',
      ].join('\n'), { mode: 0o600 });
      const daemon = h.spawn(['fastd', '--config', config]);
      await waitForLink(h, ifnames[i]!, daemon);
      await addressTunnel(net, h, ifnames[i]!, FASTD_SUBNET);
    }
    return hostToHost(net, a, b, {
      ifname: ifnames[0]!, subnet: FASTD_SUBNET, version: firstLine((await run(['fastd', '--version'])).stdout),
      device: `fastd TAP ${ifnames[0]} (L2)`, cipher: 'salsa2012+umac', daemon: 'fastd',
    });
  },
};

export const PEER_OVERLAYS: readonly PeerOverlay[] = [wireguard, tinc, nebula, fastd];
