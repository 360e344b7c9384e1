// `weave setup-cni [--bin-dir DIR] [--conf-dir DIR]`: installs the weave-net
// CNI plugin and a `weave` network for CNI runtimes (podman, containerd,
// Kubernetes nodes), pointed at this router's API socket (--api,
// WEAVE_API_SOCKET, else the socket of WEAVE_DATADIR). The work is
// cni/install.ts; this file only reads the options. It needs no running
// router: a DaemonSet's init container runs it before the router starts.

import type { Command } from 'commander';
import { resolveApiSocket } from './api-socket';
import { DEFAULT_BIN_DIR, DEFAULT_CONF_DIR, installCni } from '../cni/install';

export function registerCniCommands(program: Command): void {
  program
    .command('setup-cni')
    .description('install the weave-net CNI plugin and a network config named "weave" for CNI runtimes')
    .option('--bin-dir <dir>', 'where the runtime looks for CNI plugins', DEFAULT_BIN_DIR)
    .option('--conf-dir <dir>', 'where the runtime looks for network configs', DEFAULT_CONF_DIR)
    .option('--lib-dir <dir>', 'copy node and the plugin here and run them from here (a router in a container: a host path mounted at the same path)')
    .action((opts: { binDir: string; confDir: string; libDir?: string }, cmd: Command) => {
      const api = (cmd.optsWithGlobals() as { api?: unknown }).api;
      const socket = resolveApiSocket(typeof api === 'string' ? api : undefined, process.env);
      const r = installCni({ binDir: opts.binDir, confDir: opts.confDir, socket, ...(opts.libDir !== undefined ? { libDir: opts.libDir } : {}) });
      process.stdout.write(`installed ${r.plugin}\nwrote ${r.conflist} (network "weave", router socket ${socket})\n`);
    });
}
