// Installing Debian packages for the scripts and tests that need a tool the
// machine may lack (docker.io, podman, busybox-static...): one place knows
// that a fresh machine has no package lists yet and how long apt may take.

import { run } from './command';

const APT_TIMEOUT_MS = 600_000;

export async function aptInstall(packages: string[]): Promise<void> {
  const env = { DEBIAN_FRONTEND: 'noninteractive' };
  const install = (): ReturnType<typeof run> =>
    run(['apt-get', 'install', '-y', '-q', '--no-install-recommends', ...packages], { env, timeoutMs: APT_TIMEOUT_MS });
  let r = await install();
  if (r.code !== 0) {
    // A fresh machine has no package lists yet.
    await run(['apt-get', 'update', '-q'], { env, timeoutMs: APT_TIMEOUT_MS });
    r = await install();
  }
  if (r.code !== 0) {
    throw new Error(`cannot install ${packages.join(' ')} with apt-get (exit ${r.code}): ${r.stderr.trim().split('\n').slice(-3).join('; ')}`);
  }
}
