// The stranger of test/e2e/preauth-limits.test.ts, run as its own process in
// the attacker's namespace: it keeps `idle` TCP connections open that never
// say a word, and `big` connections that announce a control message just
// under the old 8 MiB limit and stream it, spread over the given source
// addresses, and reopens each one a moment after the router drops it. Every
// second it prints one JSON line of counts. It only ever connects to the one
// target it is given (an address inside the test's own namespaces).
//
// Usage: node preauth-attacker.js <host> <port> <idle> <big> <source>...

import * as net from 'node:net';

const OLD_LIMIT_BYTES = 8 * 1024 * 1024;
const ANNOUNCED_BYTES = OLD_LIMIT_BYTES - 16;
const CHUNK = Buffer.alloc(64 * 1024, 0x5a);
/** A dropped connection is reopened after this long (plus jitter), so the pressure stays. */
const REOPEN_MS = 500;

const [host, portText, idleText, bigText, ...sources] = process.argv.slice(2);
const port = Number(portText);
const idle = Number(idleText);
const big = Number(bigText);
if (!host || !Number.isInteger(port) || !Number.isInteger(idle) || !Number.isInteger(big) || sources.length === 0) {
  process.stderr.write('usage: preauth-attacker <host> <port> <idle> <big> <source>...\n');
  process.exit(2);
}

const counts = { opened: 0, closed: 0, open: 0, bigBytesSent: 0 };

function open(slot: number, streaming: boolean): void {
  const socket = net.connect({ host, port, localAddress: sources[slot % sources.length] });
  let connected = false;
  socket.on('connect', () => {
    connected = true;
    counts.opened++;
    counts.open++;
    if (streaming) stream(socket);
  });
  // Never read what the router says: a stranger that does not care.
  socket.pause();
  socket.on('error', () => undefined);
  socket.on('close', () => {
    if (connected) { counts.closed++; counts.open--; }
    setTimeout(() => open(slot, streaming), REOPEN_MS + Math.floor(Math.random() * REOPEN_MS));
  });
}

function stream(socket: net.Socket): void {
  const header = Buffer.alloc(4);
  header.writeUInt32BE(ANNOUNCED_BYTES);
  socket.write(header);
  let left = ANNOUNCED_BYTES;
  const pump = (): void => {
    while (left > 0 && !socket.destroyed) {
      const n = Math.min(left, CHUNK.length);
      left -= n;
      counts.bigBytesSent += n;
      if (!socket.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) { socket.once('drain', pump); return; }
    }
  };
  pump();
}

for (let i = 0; i < idle; i++) open(i, false);
for (let i = 0; i < big; i++) open(i, true);
setInterval(() => process.stdout.write(`${JSON.stringify(counts)}\n`), 1_000);
