// Owns the one libsodium instance. libsodium-wrappers finishes loading its
// WebAssembly asynchronously, and calling it before then fails in obscure ways,
// so every crypto user goes through sodium(), which refuses loudly until
// loadSodium() has been awaited once (at daemon startup, at the top of a test).
// This file must never do crypto itself.

// `import = require` keeps the live module object: its functions are attached
// only once `ready` resolves, and an `import * as` namespace copy made at load
// time would miss them.
import libsodium = require('libsodium-wrappers');

type Sodium = typeof import('libsodium-wrappers');

let readyModule: Sodium | null = null;
let loading: Promise<void> | null = null;

/** Waits for libsodium to be usable. Safe to call (and await) any number of times. */
export async function loadSodium(): Promise<void> {
  if (loading === null) {
    loading = libsodium.ready.then(() => {
      readyModule = libsodium;
    });
  }
  await loading;
}

/** The ready libsodium module; throws if loadSodium() has not completed. */
export function sodium(): Sodium {
  if (readyModule === null) {
    throw new Error('libsodium is not ready: await loadSodium() once at startup before using any crypto');
  }
  return readyModule;
}
