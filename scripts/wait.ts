// Waiting in the simulated-network harness and the tests: plain sleeps, and
// waits on a condition with a deadline (`waitFor`, which throws at the
// deadline, and `pollUntil`, which says whether the condition came true), which
// is how a test waits for anything to become ready instead of sleeping a fixed
// time.

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export interface WaitForOptions {
  /** Said in the timeout error: "timed out after N ms waiting for <what>". */
  what: string;
  timeoutMs?: number;
  intervalMs?: number;
  /** Extra context for the timeout error (e.g. the status that did not match). */
  detail?: () => string | Promise<string>;
}

/**
 * Polls `predicate` until it returns something truthy, and returns that. A
 * predicate that throws counts as "not yet"; its last error is reported if the
 * wait times out, together with `detail()`.
 */
export async function waitFor<T>(
  predicate: () => T | null | undefined | false | Promise<T | null | undefined | false>,
  opts: WaitForOptions,
): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const intervalMs = opts.intervalMs ?? 250;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown = null;
  for (;;) {
    try {
      const value = await predicate();
      if (value) return value;
      lastError = null;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() >= deadline) break;
    await sleep(Math.min(intervalMs, Math.max(0, deadline - Date.now())));
  }
  let message = `timed out after ${timeoutMs} ms waiting for ${opts.what}`;
  if (lastError !== null) message += `\nlast error: ${lastError instanceof Error ? lastError.message : String(lastError)}`;
  if (opts.detail) {
    try {
      message += `\n${await opts.detail()}`;
    } catch (e) {
      message += `\n(detail unavailable: ${e instanceof Error ? e.message : String(e)})`;
    }
  }
  throw new Error(message);
}

/**
 * Polls `predicate` until it is true or `timeoutMs` passes, and says which. For
 * a test that asserts on what it observed either way, so a shortfall is
 * reported by its own assertions rather than as a timeout. A predicate that
 * throws is not caught: only waitFor treats errors as "not yet".
 */
export async function pollUntil(
  predicate: () => boolean | Promise<boolean>,
  opts: { timeoutMs: number; intervalMs?: number },
): Promise<boolean> {
  const intervalMs = opts.intervalMs ?? 100;
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    if (await predicate()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(Math.min(intervalMs, Math.max(0, deadline - Date.now())));
  }
}

/** Blocks the thread for `ms`: only for exit and signal handlers, which cannot await. */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
