#!/usr/bin/env node
// The `weave` executable: builds the commander program, registers the command
// modules and turns every failure into `weave: <message>` with exit code 1
// (a stack trace only with WEAVE_DEBUG set). Daemon lifecycle commands
// (launch, router, stop, version) live here; everything that is a plain API
// call is registered from its own module (mesh-, container-, docker-, dns-,
// ipam- and expose-commands.ts), so this file does not grow with them. Every subcommand
// shows its own usage line after a mistake (addUsageHints).
//
// A run loads only what its verb needs (issue 14: the CLI's start is part of
// every `weave attach`): main() registers the one command module that defines
// the verb (VERB_MODULES), and the modules are required at that moment, not
// at the top of this file. A verb the table does not know (a new one, a
// typo, --help) gets every module, so the table can only cost time, never a
// command.

import path from 'node:path';
import { Command, CommanderError } from 'commander';
import type { RouterOptionValues } from './launch-options';
import { packageVersion } from './version';
import { errorMessage } from '../common/errors';

type Register = (program: Command) => void;

const registerLifecycle: Register = (program) => {
  const { addRouterOptions, toDaemonConfig } = require('./launch-options') as typeof import('./launch-options');
  const { DEFAULT_DATADIR } = require('./config') as typeof import('./config');
  addRouterOptions(
    program
      .command('launch')
      .description('start the router in the background and wait until it is ready')
      .argument('[peer...]', 'peers to connect to, host[:port]'),
  ).action(async (peers: string[], opts: RouterOptionValues) => {
    const { launch } = await import('./launch');
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
      const [{ stop }, { clientFor }] = await Promise.all([import('./launch'), import('./api-client')]);
      await stop(clientFor(cmd, { datadir }), { datadir: path.resolve(datadir) });
    });
};

const registerVersion: Register = (program) => {
  program
    .command('version')
    .description('print the version')
    .action(() => {
      process.stdout.write(`weave ${packageVersion()}\n`);
    });
};

const registerMesh: Register = (program) => {
  const { registerMeshCommands } = require('./mesh-commands') as typeof import('./mesh-commands');
  const { ipamStatusSection } = require('./ipam-commands') as typeof import('./ipam-commands');
  const { dnsStatusSection } = require('./dns-commands') as typeof import('./dns-commands');
  const { dockerStatusSection } = require('./docker-commands') as typeof import('./docker-commands');
  // In this order in the `weave status` overview, as Weave Net lists its services.
  registerMeshCommands(program, [ipamStatusSection, dnsStatusSection, dockerStatusSection]);
};

/** Every command module, in the order of `weave --help`, with the verbs it defines. */
const VERB_MODULES: readonly { verbs: readonly string[]; register: Register }[] = [
  { verbs: ['launch', 'router', 'stop'], register: registerLifecycle },
  { verbs: ['version'], register: registerVersion },
  { verbs: ['status', 'report', 'connect', 'forget'], register: registerMesh },
  { verbs: ['attach', 'detach', 'ps'], register: (p) => (require('./container-commands') as typeof import('./container-commands')).registerContainerCommands(p) },
  { verbs: ['dns-args', 'env'], register: (p) => (require('./docker-commands') as typeof import('./docker-commands')).registerDockerCommands(p) },
  { verbs: ['dns-add', 'dns-remove', 'dns-lookup'], register: (p) => (require('./dns-commands') as typeof import('./dns-commands')).registerDnsCommands(p) },
  { verbs: ['prime', 'rmpeer'], register: (p) => (require('./ipam-commands') as typeof import('./ipam-commands')).registerIpamCommands(p) },
  { verbs: ['expose', 'hide', 'reset'], register: (p) => (require('./expose-commands') as typeof import('./expose-commands')).registerExposeCommands(p) },
  { verbs: ['setup-cni'], register: (p) => (require('./cni-commands') as typeof import('./cni-commands')).registerCniCommands(p) },
];

/** The verb of a command line (its first argument that is not an option), or null. */
export function verbOf(args: readonly string[]): string | null {
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a === '--api') i++;
    else if (!a.startsWith('-')) return a;
  }
  return null;
}

/**
 * The program with every command, or with only the module defining `verb`
 * when the table knows it (the commands that verb needs, loaded just now).
 */
export function buildProgram(verb: string | null = null): Command {
  const program = new Command('weave');
  // Configured before any subcommand is added: commander copies these settings
  // into each subcommand when it is created.
  program
    .description('Weave-style encrypted mesh router')
    .option('--api <socket>', 'path of the router API socket (env WEAVE_API_SOCKET; default: the socket of WEAVE_DATADIR, /run/weave/weave.sock for the default data directory)')
    .version(packageVersion(), '-V, --version', 'print the version')
    .showHelpAfterError('(run weave --help for usage)')
    .exitOverride();
  const only = VERB_MODULES.find((m) => verb !== null && m.verbs.includes(verb));
  for (const m of only === undefined ? VERB_MODULES : [only]) m.register(program);
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
  const program = buildProgram(verbOf(argv.slice(2)));
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
