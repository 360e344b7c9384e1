// The plugin's one error class, carrying a CNI error code (spec 1.0.0,
// "Error"): 1-11 are the spec's well-known codes, 100 and up our own. Every
// failure the plugin reports leaves through `cniErrorJson`, so the runtime
// always gets {cniVersion, code, msg, details} on stdout and a non-zero exit.
//
// Pure: no I/O.

import { CodedError } from '../common/errors';

export const CNI_ERR = {
  /** The config's cniVersion, or the command for it, is not one we speak. */
  incompatibleVersion: 1,
  unsupportedField: 2,
  /** The namespace is gone, or CHECK found no attachment. */
  containerUnknown: 3,
  /** CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS or CNI_PATH is missing or malformed. */
  invalidEnv: 4,
  ioFailure: 5,
  /** Stdin is not JSON, or too big. */
  decode: 6,
  invalidConfig: 7,
  /** The router is not running (yet), or IPAM waits for consensus: the runtime may retry. */
  tryAgainLater: 11,
  /** STATUS (spec 1.1.0): the router cannot serve ADDs now. */
  notAvailable: 50,
  /** CHECK: the attachment exists but is not as ADD left it. */
  drifted: 100,
} as const;

export type CniErrorCode = (typeof CNI_ERR)[keyof typeof CNI_ERR];

/** `cniCode` is ours (CNI_ERR) or, passed through, a delegated IPAM plugin's. */
export class PluginError extends CodedError<string> {
  override readonly name = 'PluginError';

  constructor(readonly cniCode: number, message: string, readonly details = '') {
    super(String(cniCode), message);
  }
}

/** The spec's error object, one line of JSON. */
export function cniErrorJson(cniVersion: string, code: number, msg: string, details = ''): string {
  return `${JSON.stringify({ cniVersion, code, msg, ...(details !== '' ? { details } : {}) })}\n`;
}
