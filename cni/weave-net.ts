#!/usr/bin/env node
// The weave-net CNI plugin's executable: what `weave setup-cni` installs
// (behind a shim that names node and this file by absolute path) and a
// container runtime runs once per ADD, DEL, CHECK, VERSION, GC or STATUS.
// Wires the real stdin, router socket and delegate to cni/plugin.ts and
// writes its one outcome. Loads only the plugin's own modules, node's and
// common/cni-wire: no commander, no libsodium, nothing of the router, so a
// run costs little more than node's own start.

import { runDelegate } from './delegate';
import { runPlugin } from './plugin';
import { routerClient } from './router-client';
import { MAX_CONFIG_BYTES } from './config';

function readStdin(): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    process.stdin.on('data', (c: Buffer) => {
      // Kept up to the first chunk past the cap: enough for config.ts to refuse it by size.
      if (total <= MAX_CONFIG_BYTES) chunks.push(c);
      total += c.length;
    });
    process.stdin.on('end', () => resolve(Buffer.concat(chunks)));
    process.stdin.on('error', reject);
  });
}

void runPlugin({ env: process.env, stdin: readStdin, router: routerClient, delegate: runDelegate }).then((outcome) => {
  process.stdout.write(outcome.stdout);
  process.exitCode = outcome.exitCode;
});
