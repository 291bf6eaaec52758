/**
 * An application that never answers, for the program-mode shutdown test:
 * `deno run -A simple_server.ts tests/fixtures_server/hang.ts
 * --graceful-timeout 0.3`. It says on stderr that it was called.
 *
 * @module
 */

import type { Application } from "../../types.ts";

/** Writes `called` to `wsgi.errors`, then waits forever. */
export const app: Application = (environ) => {
  (environ["wsgi.errors"] as { write(s: string): void }).write("called\n");
  return new Promise(() => {});
};
