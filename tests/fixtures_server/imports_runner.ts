/**
 * An application module that imports the runner that loads it
 * (`deno run -A simple_server.ts tests/fixtures_server/imports_runner.ts`):
 * the runner must not wait on itself.
 *
 * @module
 */

import { makeServer } from "@wsgi/wsgiref/simple_server";
import type { Application } from "../../types.ts";

/** Says which runner export it could see. */
export const app: Application = (_environ, startResponse) => {
  startResponse("200 OK", [["Content-Type", "text/plain"]]);
  return [new TextEncoder().encode(`runner: ${typeof makeServer}`)];
};
