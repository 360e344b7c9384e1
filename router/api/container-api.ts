// The HTTP endpoints for containers: POST /attach, POST /detach, GET /ps
// (every attached container, the Docker plugin's too), GET /docker (engine
// reachable, auto-attach on, what it could not attach), and `containers` and
// `docker` sections in GET /report, as ApiEndpoints the composition root
// mounts (common/api-route.ts). It owns request validation only: every body
// is checked here and refused with RouterError.config (HTTP 400) before the
// ContainerManager sees it; the work itself is the manager's.

import type { ApiEndpoints } from '../../common/api-route';
import { RouterError } from '../mesh/errors';
import { checkAttachWords, MAX_ADDRESSES_PER_REQUEST } from '../host/attach-address';
import { parseContainerRef } from '../host/container-ref';
import type { AttachedContainer, AttachOptions } from '../host/attached-container';
import { validateAttachOptions } from '../host/attached-container';
import type { ContainerManager } from '../host/container-manager';
import type { DetachResult } from '../host/container-options';
import type { DockerWatchStatus } from '../host/docker-auto-attach';

/** What the API needs of the manager; a fake stands in for it in tests. */
export type ContainerApiTarget = Pick<ContainerManager, 'attach' | 'detach' | 'listAll' | 'dockerStatus'>;

export interface AttachRequest {
  container: string;
  addresses: string[];
  /** DNS: the name to register instead of the container's own (weave attach --name). */
  name?: string;
  /** DNS: register no name and leave the container's resolver alone (weave attach --without-dns). */
  withoutDns?: boolean;
  /** false: it may send as any MAC or address (weave attach --no-port-security). */
  portSecurity?: false;
}

export interface DetachRequest {
  container: string;
  /** Absent or empty: detach completely. */
  addresses?: string[];
}

export interface AttachReply {
  container: AttachedContainer;
}

export type DetachReply = DetachResult;

export interface PsReply {
  containers: AttachedContainer[];
}

export interface DockerReply {
  /** Null: this router has no Docker client (it never watched the engine). */
  docker: DockerWatchStatus | null;
}

function objectBody(body: unknown, endpoint: string, shape: string): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw RouterError.config(`${endpoint} expects a JSON object ${shape}`);
  }
  return body as Record<string, unknown>;
}

function containerField(rec: Record<string, unknown>, endpoint: string): string {
  const c = rec['container'];
  if (typeof c !== 'string' || c.trim() === '') {
    throw RouterError.config(`${endpoint}: "container" must be a Docker name or id, netns:NAME or pid:PID`);
  }
  if (c.length > 300) throw RouterError.config(`${endpoint}: "container" is ${c.length} characters long; no container name is`);
  return c;
}

function addressesField(rec: Record<string, unknown>, endpoint: string, required: boolean): string[] | undefined {
  const a = rec['addresses'];
  if (a === undefined && !required) return undefined;
  if (!Array.isArray(a)) throw RouterError.config(`${endpoint}: "addresses" must be an array of CIDRs such as "10.32.0.1/12"`);
  if (a.length > MAX_ADDRESSES_PER_REQUEST) {
    throw RouterError.config(`${endpoint}: ${a.length} addresses in one request, over the limit of ${MAX_ADDRESSES_PER_REQUEST}`);
  }
  for (const x of a) {
    if (typeof x !== 'string') throw RouterError.config(`${endpoint}: every address must be a string, got ${JSON.stringify(x)}`);
  }
  return a as string[];
}

export function parseAttachBody(body: unknown): AttachRequest {
  const rec = objectBody(body, '/attach', '{"container": "...", "addresses": ["10.32.0.1/12" | "net:CIDR" | "ip:CIDR"] (optional)}');
  const container = containerField(rec, '/attach');
  // None: the daemon's address source (IPAM) allocates; the manager says so if there is none.
  const addresses = addressesField(rec, '/attach', false) ?? [];
  // The CLI sends its words unchecked (issue 14: it loads no address parser): its checks, in its order, are
  // here, before the container is looked for, so a typo is named as the CLI would have named it.
  parseContainerRef(container);
  checkAttachWords(addresses);
  const dns = validateAttachOptions({
    ...(rec['name'] !== undefined ? { dnsName: rec['name'] as string } : {}),
    ...(rec['withoutDns'] !== undefined ? { withoutDns: rec['withoutDns'] as boolean } : {}),
    ...(rec['portSecurity'] !== undefined ? { portSecurity: rec['portSecurity'] as false } : {}),
  });
  return {
    container, addresses,
    ...(dns.dnsName !== undefined ? { name: dns.dnsName } : {}),
    ...(dns.withoutDns === true ? { withoutDns: true } : {}),
    ...(dns.portSecurity === false ? { portSecurity: false } : {}),
  };
}

function attachOptionsFrom(body: AttachRequest): AttachOptions {
  return {
    ...(body.name !== undefined ? { dnsName: body.name } : {}), ...(body.withoutDns === true ? { withoutDns: true } : {}),
    ...(body.portSecurity === false ? { portSecurity: false } : {}),
  };
}

export function parseDetachBody(body: unknown): DetachRequest {
  const rec = objectBody(body, '/detach', '{"container": "...", "addresses": [...] (optional)}');
  const container = containerField(rec, '/detach');
  const addresses = addressesField(rec, '/detach', false);
  return addresses === undefined ? { container } : { container, addresses };
}

export function containerApi(manager: ContainerApiTarget): ApiEndpoints {
  return {
    routes: [
      {
        method: 'POST', path: '/attach', handler: async (req): Promise<AttachReply> => {
          const body = parseAttachBody(req.body);
          return { container: await manager.attach(body.container, body.addresses, attachOptionsFrom(body)) };
        },
      },
      {
        method: 'POST', path: '/detach', handler: async (req): Promise<DetachReply> => {
          const body = parseDetachBody(req.body);
          return manager.detach(body.container, body.addresses);
        },
      },
      { method: 'GET', path: '/ps', handler: (): PsReply => ({ containers: manager.listAll() }) },
      { method: 'GET', path: '/docker', handler: (): DockerReply => ({ docker: manager.dockerStatus() }) },
    ],
    reportSections: [{ name: 'containers', build: () => manager.listAll() }, { name: 'docker', build: () => manager.dockerStatus() }],
  };
}
