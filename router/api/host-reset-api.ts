// POST /reset/host: the daemon's part of `weave reset` (router/host/host-reset.ts):
// runs the reset hooks the parts registered (the Docker plugin's network and
// socket) and has the bridge removed when the router stops. It takes no body;
// `weave reset` calls it after detaching the containers and handing the IPAM
// space over, and then stops the router.

import type { ApiEndpoints } from '../../common/api-route';
import type { HostReset, HostResetReply } from '../host/host-reset';

export type HostResetTarget = Pick<HostReset, 'request'>;

export function hostResetApi(reset: HostResetTarget): ApiEndpoints {
  return {
    routes: [{ method: 'POST', path: '/reset/host', handler: (): Promise<HostResetReply> => reset.request() }],
    reportSections: [],
  };
}
