// The Docker network named `weave`, made with our plugin as network and IPAM
// driver once the engine answers: `weave launch` leaves the user with
// `docker run --network weave` ready. Without an engine it says so in its
// state (status shows it) and tries again every 5 s, so an engine that
// starts later gets the network. `weave reset` removes it again.
//
// It owns its HTTP calls to the engine's socket (create, inspect, remove a
// network) and nothing else; a network named `weave` with another driver is
// left alone and reported, never replaced.

import http from 'node:http';
import { errorMessage } from '../../common/errors';
import type { Logger } from '../../common/logger';

export const PLUGIN_NETWORK_NAME = 'weave';
export const PLUGIN_DRIVER_NAME = 'weave';
export const PLUGIN_NETWORK_RETRY_MS = 5_000;
const TIMEOUT_MS = 30_000;
const MAX_REPLY_BYTES = 1024 * 1024;

export interface PluginNetworkState {
  /** 'ready': the network exists with our driver. */
  state: 'waiting' | 'ready' | 'conflict' | 'stopped';
  /** Why not ready, with what to do; null when ready. */
  problem: string | null;
}

interface Reply {
  status: number;
  body: string;
}

function request(socketPath: string, method: string, path: string, body?: unknown): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const text = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request({
      socketPath, method, path, agent: false, timeout: TIMEOUT_MS,
      headers: { Accept: 'application/json', ...(text !== undefined ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) } : {}) },
    }, (res) => {
      const chunks: Buffer[] = [];
      let total = 0;
      res.on('data', (c: Buffer) => {
        total += c.length;
        if (total > MAX_REPLY_BYTES) res.destroy(new Error('reply too large'));
        else chunks.push(c);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${socketPath} in ${TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end(text);
  });
}

function messageOf(body: string): string {
  try {
    const m = (JSON.parse(body) as { message?: unknown }).message;
    if (typeof m === 'string') return m.slice(0, 300);
  } catch {
    // Not JSON: the text itself.
  }
  return body.trim().slice(0, 300);
}

export class PluginNetworkKeeper {
  private current: PluginNetworkState = { state: 'waiting', problem: 'not tried yet' };
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(private readonly socketPath: string, private readonly logger: Logger, private readonly retryMs = PLUGIN_NETWORK_RETRY_MS) {}

  status(): PluginNetworkState {
    return { ...this.current };
  }

  /** Makes sure the network exists now, and keeps trying until it does. */
  start(): void {
    this.stopped = false;
    void this.attempt();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.current.state !== 'ready') this.current = { state: 'stopped', problem: 'the router is stopping' };
  }

  /** `weave reset`: removes the network (Docker refuses while containers use it; the error says which). */
  async remove(): Promise<void> {
    this.stop();
    const r = await request(this.socketPath, 'DELETE', `/networks/${PLUGIN_NETWORK_NAME}`).catch((err: unknown) => {
      throw new Error(`cannot reach Docker at ${this.socketPath} to remove the network ${PLUGIN_NETWORK_NAME}: ${errorMessage(err)}`);
    });
    if (r.status !== 204 && r.status !== 200 && r.status !== 404) {
      throw new Error(`Docker refused to remove the network ${PLUGIN_NETWORK_NAME}: ${messageOf(r.body)} (docker network rm ${PLUGIN_NETWORK_NAME} once its containers are gone)`);
    }
  }

  private async attempt(): Promise<void> {
    if (this.stopped) return;
    const before = this.current.problem;
    try {
      this.current = await this.ensure();
    } catch (err) {
      this.current = { state: 'waiting', problem: `cannot reach Docker at ${this.socketPath} (${errorMessage(err)}); the network ${PLUGIN_NETWORK_NAME} is made once it answers` };
    }
    if (this.current.state === 'ready') {
      if (before !== null) this.logger.info('docker network ready', { network: PLUGIN_NETWORK_NAME });
      return;
    }
    if (this.current.problem !== before) this.logger.warn('docker network not made', { network: PLUGIN_NETWORK_NAME, why: this.current.problem });
    if (this.current.state === 'conflict' || this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.attempt();
    }, this.retryMs);
    this.timer.unref();
  }

  private async ensure(): Promise<PluginNetworkState> {
    const have = await request(this.socketPath, 'GET', `/networks/${PLUGIN_NETWORK_NAME}`);
    if (have.status === 200) return this.judge(have.body);
    if (have.status !== 404) return { state: 'waiting', problem: `Docker answered HTTP ${have.status} about the network ${PLUGIN_NETWORK_NAME}: ${messageOf(have.body)}` };
    const made = await request(this.socketPath, 'POST', '/networks/create', {
      Name: PLUGIN_NETWORK_NAME, Driver: PLUGIN_DRIVER_NAME, CheckDuplicate: true, IPAM: { Driver: PLUGIN_DRIVER_NAME },
    });
    if (made.status === 201 || made.status === 200) return { state: 'ready', problem: null };
    // Made by someone else in between: look again.
    if (made.status === 409) return this.judge((await request(this.socketPath, 'GET', `/networks/${PLUGIN_NETWORK_NAME}`)).body);
    return { state: 'waiting', problem: `Docker refused to create the network ${PLUGIN_NETWORK_NAME}: ${messageOf(made.body)}` };
  }

  private judge(body: string): PluginNetworkState {
    let driver: unknown;
    try {
      driver = (JSON.parse(body) as { Driver?: unknown }).Driver;
    } catch {
      driver = undefined;
    }
    if (driver === PLUGIN_DRIVER_NAME) return { state: 'ready', problem: null };
    return {
      state: 'conflict',
      problem: `a Docker network named ${PLUGIN_NETWORK_NAME} exists with driver ${JSON.stringify(driver)}: it is left alone; remove it (docker network rm ${PLUGIN_NETWORK_NAME}) and relaunch for the weave plugin's network`,
    };
  }
}
