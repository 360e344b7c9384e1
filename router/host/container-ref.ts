// Container references, as `weave attach` takes them: a Docker name or id,
// `netns:NAME` (a namespace under /var/run/netns) or `pid:PID`. It owns
// parsing and printing them, and resolving one to the network namespace it
// names (its path, its dev:inode identity, and what `ip link ... netns`
// needs), through the small HostFs adapter over /proc and Docker's inspect.
//
// It must never change anything: resolving only reads. It refuses a reference
// that resolves to the host's own namespace, so nothing attaches the host to
// itself.

import fs from 'node:fs';
import { RouterError } from '../mesh/errors';
import { assertNever } from '../../common/errors';
// Only the type: `weave attach` parses references in the CLI, which must not load the Docker client (issue 14).
import type { DockerApi } from './docker-client';

export type ContainerRef =
  | { kind: 'docker'; ref: string }
  | { kind: 'netns'; name: string }
  | { kind: 'pid'; pid: number };

export type ContainerKind = ContainerRef['kind'];

const NETNS_NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$/;
/** Docker names (without the leading '/') and full or short hex ids. */
const DOCKER_REF_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$/;

export function validateDockerRef(ref: string): string {
  if (typeof ref !== 'string' || !DOCKER_REF_RE.test(ref)) {
    throw RouterError.config(
      `not a Docker container name or id: ${JSON.stringify(ref)} (names are letters, digits, '_', '.', '-'; ` +
        `use netns:NAME for a network namespace or pid:PID for a process)`,
    );
  }
  return ref;
}

/** A name `ip netns` could have made: one path component under /var/run/netns (and /etc/netns), never '.' or '..'. */
export function isNetnsName(name: string): boolean {
  return NETNS_NAME_RE.test(name) && name !== '.' && name !== '..';
}

/** The namespace file a reference names; the one place these paths are built. */
export function namespacePathOf(kind: 'netns', name: string): string;
export function namespacePathOf(kind: 'docker' | 'pid', pid: number): string;
export function namespacePathOf(kind: ContainerKind, key: string | number): string {
  return kind === 'netns' ? `/var/run/netns/${String(key)}` : `/proc/${String(key)}/ns/net`;
}
/** Linux's PID_MAX_LIMIT (2^22). */
const MAX_PID = 4_194_304;

/**
 * `netns:NAME` (a namespace under /var/run/netns), `pid:PID`, or else a Docker
 * container name or id. Throws RouterError.config with what was expected.
 */
export function parseContainerRef(text: string): ContainerRef {
  if (typeof text !== 'string' || text.trim() === '') {
    throw RouterError.config('a container is required: a Docker name or id, netns:NAME, or pid:PID');
  }
  const s = text.trim();
  if (s.startsWith('netns:')) {
    const name = s.slice('netns:'.length);
    if (!isNetnsName(name)) {
      throw RouterError.config(`netns:NAME needs a network namespace name (letters, digits, '_', '.', '-'), got ${JSON.stringify(s)}`);
    }
    return { kind: 'netns', name };
  }
  if (s.startsWith('pid:')) {
    const p = s.slice('pid:'.length);
    if (!/^[1-9]\d{0,6}$/.test(p) || Number(p) > MAX_PID) {
      throw RouterError.config(`pid:PID needs a process id from 1 to ${MAX_PID}, got ${JSON.stringify(s)}`);
    }
    return { kind: 'pid', pid: Number(p) };
  }
  if (s.startsWith('cni:')) {
    throw RouterError.config(`${JSON.stringify(s)} is an attachment a CNI runtime (podman, containerd) made and owns: add or remove it with the runtime`);
  }
  if (s.includes(':')) {
    throw RouterError.config(`unknown container reference ${JSON.stringify(s)}: use a Docker name or id, netns:NAME, or pid:PID`);
  }
  return { kind: 'docker', ref: validateDockerRef(s) };
}

export function formatContainerRef(ref: ContainerRef): string {
  switch (ref.kind) {
    case 'docker':
      return ref.ref;
    case 'netns':
      return `netns:${ref.name}`;
    case 'pid':
      return `pid:${ref.pid}`;
    default:
      return assertNever(ref);
  }
}

/** Namespace identity without running a command: dev:inode of an nsfs file. */
export interface HostFs {
  /** `dev:inode` of the namespace the file refers to, or null when it does not exist (throws when we may not look). */
  namespaceId(nsPath: string): string | null;
  /** The command name of a process (/proc/PID/comm), or null. */
  processName(pid: number): string | null;
}

/**
 * `dev:inode` of a namespace file; null when it does not exist. Being refused
 * (EACCES, EPERM: a router without root, /proc mounted hidepid) is not
 * absence, so it throws saying so rather than "no process with pid 1".
 */
export function namespaceIdOf(nsPath: string, stat: (p: string) => { dev: number; ino: number } = fs.statSync): string | null {
  try {
    const st = stat(nsPath);
    return `${st.dev}:${st.ino}`;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') {
      throw new RouterError('io', `permission denied reading ${nsPath} (${code}): the router must run as root to reach other processes' namespaces`);
    }
    return null;
  }
}

/** The real /proc and /var/run/netns. */
export const procHostFs: HostFs = {
  namespaceId: (nsPath) => namespaceIdOf(nsPath),
  processName(pid: number): string | null {
    try {
      return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() || null;
    } catch {
      return null;
    }
  },
};

/** What a reference names right now. */
export interface ResolvedContainer {
  kind: ContainerKind;
  id: string;
  name: string;
  pid: number | null;
  netnsPath: string;
  nsId: string;
}

export interface ResolveEnv {
  /** Null when Docker is not available: Docker references then get a clear error. */
  docker: DockerApi | null;
  hostFs: HostFs;
  /** The namespace the bridge lives in, e.g. /proc/self/ns/net. */
  hostNetns: string;
}

/**
 * The namespace `ref` names, or a RouterError.config saying why there is none
 * (no such container, not running, the host's own namespace).
 */
export async function resolveContainer(ref: ContainerRef, env: ResolveEnv): Promise<ResolvedContainer> {
  let resolved: ResolvedContainer;
  switch (ref.kind) {
    case 'docker': {
      if (env.docker === null) {
        throw RouterError.config(`cannot attach Docker container ${ref.ref}: Docker is not available to this router`);
      }
      const info = await env.docker.inspect(ref.ref);
      if (info === null) throw RouterError.config(`no such Docker container: ${ref.ref}`);
      if (!info.running) throw RouterError.config(`Docker container ${info.name} is not running`);
      const netnsPath = namespacePathOf('docker', info.pid);
      const nsId = env.hostFs.namespaceId(netnsPath);
      if (nsId === null) throw RouterError.config(`Docker container ${info.name} stopped while being attached`);
      resolved = { kind: 'docker', id: info.id, name: info.name, pid: info.pid, netnsPath, nsId };
      break;
    }
    case 'netns': {
      const netnsPath = namespacePathOf('netns', ref.name);
      const nsId = env.hostFs.namespaceId(netnsPath);
      if (nsId === null) throw RouterError.config(`no network namespace named ${ref.name} (see ip netns list)`);
      resolved = { kind: 'netns', id: `netns:${ref.name}`, name: ref.name, pid: null, netnsPath, nsId };
      break;
    }
    case 'pid': {
      const netnsPath = namespacePathOf('pid', ref.pid);
      const nsId = env.hostFs.namespaceId(netnsPath);
      if (nsId === null) throw RouterError.config(`no process with pid ${ref.pid}`);
      const comm = env.hostFs.processName(ref.pid) ?? `pid ${ref.pid}`;
      resolved = { kind: 'pid', id: `pid:${ref.pid}`, name: comm, pid: ref.pid, netnsPath, nsId };
      break;
    }
    default:
      return assertNever(ref);
  }
  if (resolved.nsId === env.hostFs.namespaceId(env.hostNetns)) {
    throw RouterError.config(`${formatContainerRef(ref)} shares the host's network namespace; there is nothing to attach`);
  }
  return resolved;
}

