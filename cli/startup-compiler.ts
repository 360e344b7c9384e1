// Holds V8's optimizing compiler (TurboFan) off while the router starts
// (issue 14: its idle RSS). Loading the router's ~220 CommonJS modules makes
// Node's own module resolution (path.resolve, normalizeString, ...) hot
// enough to be optimized, and the first optimization maps ~3.5 MB of
// TurboFan's code pages of the node binary, plus its heap, into a router that
// then idles: idle RSS 60.4 -> 56.2 MB with the compiler held off (an idle
// router and one with a container attached optimize nothing after startup).
// The supervisor starts the router with STARTUP_HOLD_FLAG; the daemon calls
// releaseStartupHold() once it is ready, so everything hot from then on (the
// frame path, as soon as traffic flows) is optimized as usual.

import { setFlagsFromString } from 'node:v8';

/** The Node flag of the supervised router that holds the optimizing compiler off (cli/supervisor.ts). */
export const STARTUP_HOLD_FLAG = '--no-turbofan';
const RELEASE_FLAG = '--turbofan';

/**
 * Turns the optimizing compiler back on if this process was started with
 * STARTUP_HOLD_FLAG (by the supervisor); otherwise leaves V8 as it was started
 * (`weave router` by hand, or a user's own flags such as --jitless). Returns
 * whether it did.
 */
export function releaseStartupHold(execArgv: readonly string[] = process.execArgv, setFlags: (flags: string) => void = setFlagsFromString): boolean {
  if (!execArgv.includes(STARTUP_HOLD_FLAG) || execArgv.includes('--jitless')) return false;
  setFlags(RELEASE_FLAG);
  return true;
}
