// Whether the Docker end-to-end tests can run here: starts dockerd when needed
// (scripts/docker.ts), and when Docker cannot be installed or started gives the
// reason, for a test's `{ skip }` option, so that the run counts the test as
// skipped with its reason instead of as passed.

import { errorMessage } from '../../common/errors';
import { ensureDockerd } from '../../scripts/docker';

/** false when dockerd is up, else why the Docker tests are skipped. */
export async function dockerSkipReason(): Promise<string | false> {
  try {
    await ensureDockerd();
    return false;
  } catch (err) {
    return `Docker cannot be installed or started here: ${errorMessage(err)}`;
  }
}
