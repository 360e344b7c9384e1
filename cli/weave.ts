#!/usr/bin/env node
// The `weave` executable: builds the commander program, registers the command
// modules and turns every failure into `weave: <message>` with exit code 1
// (a stack trace only with WEAVE_DEBUG set). Daemon lifecycle commands
// (launch, router, stop, version) live here; everything that is a plain API
// call is registered from its own module (mesh-, container-, dns-, ipam- and
// expose-commands.ts), so this file does not grow with them. Every subcommand
// shows its own usage line after a mistake (addUsageHints).

import path from 'node:path';
import { Command, CommanderError } from 'commander';
import { clientFor } from './api-client';
import { DEFAULT_DATADIR } from './config';
import { launch, stop } from './launch';
import { addRouterOptions, toDaemonConfig } from './launch-options';
import type { RouterOptionValues } from './launch-options';
import { registerCniCommands } from './cni-commands';
import { registerContainerCommands } from './container-commands';
import { registerExposeCommands } from './expose-commands';
import { dnsStatusSection, registerDnsCommands } from './dns-commands';
import { ipamStatusSection, registerIpamCommands } from './ipam-commands';
import { registerMeshCommands } from './mesh-commands';
import { packageVersion } from './version';
import { errorMessage } from '../common/errors';

export function buildProgram(): Command {
  const program = new Command('weave');
  // Configured before any subcommand is added: commander copies these settings
  // into each subcommand when it is created.
  program
    .description('Weave-style encrypted mesh router')
    .option('--api <socket>', 'path of the router API socket (env WEAVE_API_SOCKET; default: the socket of WEAVE_DATADIR, /run/weave/weave.sock for the default data directory)')
    .version(packageVersion(), '-V, --version', 'print the version')
    .showHelpAfterError('(run weave --help for usage)')
    .exitOverride();

  addRouterOptions(
    program
      .command('launch')
      .description('start the router in the background and wait until it is ready')
      .argument('[peer...]', 'peers to connect to, host[:port]'),
  ).action(async (peers: string[], opts: RouterOptionValues) => {
    await launch(toDaemonConfig(opts, peers));
  });

  addRouterOptions(
    program
      .command('router')
      .description('run the router in the foreground (what launch starts)')
      .argument('[peer...]', 'peers to connect to, host[:port]'),
  ).action(async (peers: string[], opts: RouterOptionValues) => {
    const config = toDaemonConfig(opts, peers);
    // Loaded on demand: the daemon pulls in the whole router, which no other command needs.
    const { runDaemon } = await import('./daemon');
    await runDaemon(config);
  });

  program
    .command('stop')
    .description('stop the router and wait until it has exited')
    .option('--datadir <dir>', `router data directory, to watch its pid file (env WEAVE_DATADIR, default: ${DEFAULT_DATADIR})`)
    .action(async (opts: { datadir?: string }, cmd: Command) => {
      const envDir = process.env['WEAVE_DATADIR'];
      const datadir = opts.datadir ?? (envDir !== undefined && envDir !== '' ? envDir : DEFAULT_DATADIR);
      await stop(clientFor(cmd, { datadir }), { datadir: path.resolve(datadir) });
    });

  program
    .command('version')
    .description('print the version')
    .action(() => {
      process.stdout.write(`weave ${packageVersion()}\n`);
    });

  // In this order in the `weave status` overview, as Weave Net lists its services.
  registerMeshCommands(program, [ipamStatusSection, dnsStatusSection]);
  registerContainerCommands(program);
  registerDnsCommands(program);
  registerIpamCommands(program);
  registerExposeCommands(program);
  registerCniCommands(program);
  addUsageHints(program);
  return program;
}

/**
 * After an error in a subcommand (a missing argument, an unknown option)
 * commander prints the message and then this: the subcommand's own usage
 * line and where its full help is, rather than a pointer to `weave --help`.
 * Called once every subcommand has its arguments and usage.
 */
export function addUsageHints(program: Command): void {
  for (const cmd of program.commands) {
    const name = `${program.name()} ${cmd.name()}`;
    cmd.showHelpAfterError(`Usage: ${name} ${cmd.usage()}\n(run ${name} --help for details)`);
  }
}

export async function main(argv: string[] = process.argv): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    // Commander has already printed its own message (unknown option, --help...).
    if (err instanceof CommanderError) return err.exitCode;
    const debug = process.env['WEAVE_DEBUG'];
    if (debug !== undefined && debug !== '' && err instanceof Error && err.stack !== undefined) {
      process.stderr.write(`weave: ${err.stack}\n`);
    } else {
      process.stderr.write(`weave: ${errorMessage(err)}\n`);
    }
    return 1;
  }
}

if (require.main === module) {
  main().then(
    (code) => {
      // Only set the code: exiting outright could cut off a foreground router's
      // last log lines or output still buffered for a pipe.
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`weave: ${errorMessage(err)}\n`);
      process.exitCode = 1;
    },
  );
}
