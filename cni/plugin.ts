// The weave-net CNI plugin's logic, one invocation at a time: read the
// environment and the network config, negotiate the version, and carry out
// ADD, DEL, CHECK, VERSION, GC or STATUS with one call to the router's /cni
// endpoints (the router makes the veth, the addresses, the routes and the
// DNS name: it is the only process that changes host state), delegating
// addresses to the config's IPAM plugin when it has an `ipam` section.
//
// Every outcome is a PluginOutcome: the result or the spec's error object
// for stdout, and the exit code. I/O (stdin, the router, the delegate) is
// injected, so unit tests drive it without a router.

import type { CniAttachment, CniDelRequest } from '../common/cni-wire';
import { CNI_WIRE_VERSION } from '../common/cni-wire';
import { errorMessage } from '../common/errors';
import type { CniEnv, NetConf } from './config';
import { SUPPORTED_VERSIONS, answerVersion, dnsNameFor, parseEnv, parseJsonObject, parseNetConf, versionHasCommand } from './config';
import type { DelegateRun } from './delegate';
import { CNI_ERR, PluginError, cniErrorJson } from './errors';
import { buildResult, readIpamResult } from './result';
import type { RouterCall } from './router-client';

/** Beyond the IPAM wait, what a veth and its addresses take on a loaded host. */
const ROUTER_SLACK_MS = 20_000;
const DEFAULT_IPAM_WAIT_MS = 10_000;

export interface PluginIo {
  env: Record<string, string | undefined>;
  stdin: () => Promise<Buffer>;
  router: (socket: string, timeoutMs: number) => RouterCall;
  delegate: DelegateRun;
}

export interface PluginOutcome {
  stdout: string;
  exitCode: number;
}

function ok(result: unknown): PluginOutcome {
  return { stdout: result === undefined ? '' : `${JSON.stringify(result)}\n`, exitCode: 0 };
}

export async function runPlugin(io: PluginIo): Promise<PluginOutcome> {
  let raw: Record<string, unknown> | null = null;
  try {
    const env = parseEnv(io.env);
    const stdin = await io.stdin();
    if (env.command === 'VERSION') {
      // Probing must work whatever the runtime sends: answer in its version when we speak it.
      try {
        raw = parseJsonObject(stdin);
      } catch {
        raw = null;
      }
      return ok({ cniVersion: answerVersion(raw), supportedVersions: [...SUPPORTED_VERSIONS].reverse() });
    }
    raw = parseJsonObject(stdin);
    const conf = parseNetConf(raw);
    if (!versionHasCommand(conf.cniVersion, env.command)) {
      throw new PluginError(CNI_ERR.incompatibleVersion, `${env.command} is not part of CNI ${conf.cniVersion}`);
    }
    const call = (timeoutMs: number): RouterCall => io.router(conf.socket, timeoutMs);
    switch (env.command) {
      case 'ADD': return ok(await add(io, env, conf, stdin, call));
      case 'DEL': return ok(await del(io, env, conf, stdin, call(ROUTER_SLACK_MS)));
      case 'CHECK': return ok(await check(io, env, conf, stdin, call(ROUTER_SLACK_MS)));
      case 'GC': return ok(await gc(io, conf, stdin, call(ROUTER_SLACK_MS)));
      case 'STATUS': return ok(await status(io, conf, stdin, call(ROUTER_SLACK_MS)));
    }
  } catch (err) {
    const e = err instanceof PluginError ? err : new PluginError(CNI_ERR.ioFailure, errorMessage(err));
    return { stdout: cniErrorJson(answerVersion(raw), e.cniCode, e.message, e.details), exitCode: 1 };
  }
}

async function add(io: PluginIo, env: CniEnv, conf: NetConf, stdin: Buffer, call: (ms: number) => RouterCall): Promise<unknown> {
  let delegated: { addresses: { address: string; gateway?: string }[]; routes: { dst: string; gw?: string }[] } | undefined;
  if (conf.ipamType !== null) {
    const r = await io.delegate(conf.ipamType, io.env, stdin);
    if (r === null) throw new PluginError(CNI_ERR.ioFailure, `IPAM plugin ${conf.ipamType} printed no result`);
    delegated = readIpamResult(conf.ipamType, r);
  }
  const waitMs = conf.ipamWaitMs ?? DEFAULT_IPAM_WAIT_MS;
  try {
    const reply = await call(waitMs + ROUTER_SLACK_MS)('POST', '/cni/add', {
      version: CNI_WIRE_VERSION, containerId: env.containerId, ifName: env.ifName, netns: env.netns,
      network: conf.name, dnsName: dnsNameFor(env),
      ...(delegated !== undefined ? { delegated } : {}),
      ...(conf.ipamWaitMs !== null ? { ipamWaitMs: conf.ipamWaitMs } : {}),
      ...(conf.portSecurity ? {} : { portSecurity: false }),
    });
    return buildResult(conf.cniVersion, attachmentOf(reply));
  } catch (err) {
    // The runtime will not DEL an ADD that failed: give the delegate's addresses back now.
    if (conf.ipamType !== null) await io.delegate(conf.ipamType, { ...io.env, CNI_COMMAND: 'DEL' }, stdin).catch(() => null);
    throw err;
  }
}

/** DEL is done when both the router and the delegate are done; it succeeds when there was nothing to do. */
async function del(io: PluginIo, env: CniEnv, conf: NetConf, stdin: Buffer, call: RouterCall): Promise<undefined> {
  let first: unknown = null;
  const body: CniDelRequest = { version: CNI_WIRE_VERSION, containerId: env.containerId, ifName: env.ifName, ...(env.netns !== '' ? { netns: env.netns } : {}) };
  try {
    await call('POST', '/cni/del', body);
  } catch (err) {
    first = err;
  }
  if (conf.ipamType !== null) {
    try {
      await io.delegate(conf.ipamType, io.env, stdin);
    } catch (err) {
      first ??= err;
    }
  }
  if (first !== null) throw first;
  return undefined;
}

async function check(io: PluginIo, env: CniEnv, conf: NetConf, stdin: Buffer, call: RouterCall): Promise<undefined> {
  if (conf.prevResult === null) throw new PluginError(CNI_ERR.invalidConfig, 'CHECK needs the prevResult of the ADD in the network configuration');
  const a = attachmentOf(await call('POST', '/cni/check', { version: CNI_WIRE_VERSION, containerId: env.containerId, ifName: env.ifName, netns: env.netns }));
  const prevIps = Array.isArray(conf.prevResult['ips']) ? (conf.prevResult['ips'] as unknown[]) : [];
  const listed = new Set(prevIps.map((ip) => (typeof ip === 'object' && ip !== null ? (ip as { address?: unknown }).address : undefined)));
  for (const x of a.addresses) {
    if (!listed.has(x.address)) throw new PluginError(CNI_ERR.drifted, `${env.ifName} has ${x.address}, which the prevResult does not list`);
  }
  if (listed.size !== a.addresses.length) throw new PluginError(CNI_ERR.drifted, `prevResult lists ${listed.size} addresses, ${env.ifName} has ${a.addresses.length}`);
  if (conf.ipamType !== null) await io.delegate(conf.ipamType, io.env, stdin);
  return undefined;
}

async function gc(io: PluginIo, conf: NetConf, stdin: Buffer, call: RouterCall): Promise<undefined> {
  // Without the list, every attachment would look stale: refuse rather than remove them all.
  if (conf.validAttachments === null) throw new PluginError(CNI_ERR.invalidConfig, 'GC needs "cni.dev/valid-attachments" in the network configuration');
  await call('POST', '/cni/gc', { version: CNI_WIRE_VERSION, network: conf.name, valid: conf.validAttachments });
  if (conf.ipamType !== null) await io.delegate(conf.ipamType, io.env, stdin);
  return undefined;
}

async function status(io: PluginIo, conf: NetConf, stdin: Buffer, call: RouterCall): Promise<undefined> {
  try {
    await call('GET', '/cni');
  } catch (err) {
    throw new PluginError(CNI_ERR.notAvailable, errorMessage(err), err instanceof PluginError ? err.details : '');
  }
  if (conf.ipamType !== null) await io.delegate(conf.ipamType, io.env, stdin);
  return undefined;
}

/** The router's reply, checked before anything is built from it. */
function attachmentOf(v: unknown): CniAttachment {
  const a = v as Partial<CniAttachment> | null;
  const good = typeof a === 'object' && a !== null && typeof a.ifName === 'string' && typeof a.mac === 'string' && typeof a.netns === 'string'
    && Array.isArray(a.addresses) && a.addresses.every((x) => typeof x?.address === 'string')
    && Array.isArray(a.routes) && a.routes.every((r) => typeof r?.dst === 'string')
    && (a.dns === null || (typeof a.dns === 'object' && Array.isArray(a.dns?.nameservers)));
  if (!good) throw new PluginError(CNI_ERR.ioFailure, 'the router replied with something that is not an attachment; is it a weave router of the same release?');
  return a as CniAttachment;
}
