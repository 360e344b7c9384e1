// The hands of test/e2e/kernel-relay-rules.test.ts inside one namespace, run
// as `ip netns exec NS node kernel-relay-agent.js`: on the relay host it runs
// KernelRelayRules as the router would (ports reserved in that namespace,
// nft and ip run there), on the ends it holds UDP sockets that send and keep
// what they hear. One JSON request a line on stdin, one JSON answer a line on
// stdout ({id, ok, result} or {id, ok: false, error}); "ready" first.

import { createInterface } from 'node:readline';
import { createSocket, type Socket } from 'node:dgram';
import { ExecCommandRunner } from '../../router/host/command-runner';
import { KernelRelayRules, type KernelRelayEndpoint, type KernelRelayPair } from '../../router/host/kernel-relay-rules';
import { TextLogger } from '../../common/logger';

export interface Heard { from: string; port: number; text: string }

export type AgentRequest =
  | { op: 'open'; a: KernelRelayEndpoint; b: KernelRelayEndpoint }
  | { op: 'close'; pair: KernelRelayPair }
  | { op: 'closeAll' }
  | { op: 'counters' }
  | { op: 'bind'; port: number }
  | { op: 'send'; from: number; host: string; port: number; text: string }
  | { op: 'heard'; port: number }
  | { op: 'canBind'; port: number };

// Made on first use, so the ends never touch nftables.
let rules: KernelRelayRules | null = null;
const relay = (): KernelRelayRules =>
  (rules ??= new KernelRelayRules(new ExecCommandRunner(), new TextLogger('debug', (line) => process.stderr.write(`${line}\n`))));
const sockets = new Map<number, { socket: Socket; heard: Heard[] }>();

function bind(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = createSocket('udp4');
    socket.once('error', (e: NodeJS.ErrnoException) => { socket.close(); resolve(e.code ?? e.message); });
    socket.bind(port, () => {
      const heard: Heard[] = [];
      socket.on('message', (msg, rinfo) => heard.push({ from: rinfo.address, port: rinfo.port, text: msg.toString() }));
      sockets.set(port, { socket, heard });
      resolve('bound');
    });
  });
}

async function handle(req: AgentRequest): Promise<unknown> {
  switch (req.op) {
    case 'open': return relay().open(req.a, req.b);
    case 'close': return relay().close(req.pair);
    case 'closeAll': return relay().closeAll();
    case 'counters': return Object.fromEntries(await relay().counters());
    case 'bind': {
      const r = await bind(req.port);
      if (r !== 'bound') throw new Error(`bind ${req.port}: ${r}`);
      return r;
    }
    case 'canBind': {
      const r = await bind(req.port);
      if (r === 'bound') { sockets.get(req.port)?.socket.close(); sockets.delete(req.port); }
      return r;
    }
    case 'send': {
      const s = sockets.get(req.from);
      if (s === undefined) throw new Error(`no socket on ${req.from}`);
      await new Promise<void>((resolve, reject) => s.socket.send(req.text, req.port, req.host, (e) => (e ? reject(e) : resolve())));
      return null;
    }
    case 'heard': return sockets.get(req.port)?.heard ?? [];
  }
}

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const { id, ...req } = JSON.parse(line) as AgentRequest & { id: number };
  handle(req as AgentRequest).then(
    (result) => process.stdout.write(`${JSON.stringify({ id, ok: true, result: result ?? null })}\n`),
    (err: unknown) => process.stdout.write(`${JSON.stringify({ id, ok: false, error: err instanceof Error ? err.message : String(err) })}\n`),
  );
});
// stdin closing is the test saying goodbye (or dying): leave nothing of ours behind.
lines.on('close', () => { void (rules?.closeAll() ?? Promise.resolve()).then(() => process.exit(0)); });
process.stdout.write('ready\n');
