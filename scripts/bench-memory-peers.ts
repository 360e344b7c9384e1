// Many mesh peers in one process, for scripts/bench-memory: each is the
// mesh's own Router (router/mesh/router.ts) on real TCP, listening on its own
// address and dialing from it (the addresses are on the namespace's eth0,
// added by bench-memory), with its own key, so the router under test sees
// distinct peers speaking the real protocol: handshake, encryption, heartbeats,
// topology gossip. They have no data plane, and no discovery: each connects
// to the one target it is given, not to the others.
//
// It prints one JSON line a second, {"started":N,"connected":M} (M: peers
// with an established connection), and ends on SIGTERM/SIGINT, shutting every
// router down.
//
// Usage (inside a namespace): node dist/scripts/bench-memory-peers.js --target HOST[:PORT] ADDRESS...
// The password comes from WEAVE_PASSWORD (unset: a plaintext mesh).

import { randomBytes } from 'node:crypto';
import { SystemClock } from '../common/clock';
import { silentLogger } from '../common/logger';
import { systemRng } from '../common/rng';
import { DEFAULT_TIMINGS } from '../router/mesh/constants';
import { stretchPassword } from '../router/mesh/password-key';
import { PeerKey } from '../router/mesh/peer-key';
import { Router } from '../router/mesh/router';
import { loadSodium } from '../router/mesh/sodium';
import { TcpTransport } from '../router/mesh/tcp-transport';
import { packageVersion } from '../cli/version';

const PORT = 6783;
/** Between two peers' starts, so the target's cap on handshakes in progress is not the thing measured. */
const START_SPACING_MS = 30;

function parseArgs(argv: string[]): { target: string; addresses: string[] } {
  const i = argv.indexOf('--target');
  const target = i >= 0 ? argv[i + 1] : undefined;
  const addresses = argv.filter((_, k) => i < 0 || (k !== i && k !== i + 1));
  if (target === undefined || addresses.length === 0) {
    throw new Error('usage: bench-memory-peers.js --target HOST[:PORT] ADDRESS...');
  }
  return { target, addresses };
}

async function main(): Promise<void> {
  const { target, addresses } = parseArgs(process.argv.slice(2));
  await loadSodium();
  const password = process.env['WEAVE_PASSWORD'];
  const passwordKey = password !== undefined && password !== '' ? stretchPassword(password) : null;
  const clock = new SystemClock();
  const routers: Router[] = [];
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    for (const r of routers) r.shutdown();
    // Sockets close on their own once shut down; give them a moment, then go.
    setTimeout(() => process.exit(0), 500).unref();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  const report = setInterval(() => {
    const connected = routers.filter((r) => r.status().connections.some((c) => c.state === 'established')).length;
    process.stdout.write(`${JSON.stringify({ started: routers.length, connected })}\n`);
  }, 1_000);
  report.unref();
  for (const [n, address] of addresses.entries()) {
    if (stopping) break;
    const key = PeerKey.generate((count) => new Uint8Array(randomBytes(count)));
    const router = new Router({ clock, rng: systemRng, logger: silentLogger, transport: new TcpTransport(address, address) }, {
      name: key.name,
      key,
      nickname: `mp${n + 1}`,
      incarnation: clock.now(),
      port: PORT,
      passwordKey,
      discovery: false,
      connLimit: 4,
      timings: DEFAULT_TIMINGS,
      version: packageVersion(),
    });
    routers.push(router);
    await router.start([target]);
    await new Promise((resolve) => setTimeout(resolve, START_SPACING_MS));
  }
  // Keeps the process alive until a signal (the routers' own timers are unref'd or not, either way).
  setInterval(() => undefined, 60_000);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench-memory-peers: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
