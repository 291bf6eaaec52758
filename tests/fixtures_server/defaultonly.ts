/**
 * A module whose only application is its default export, for the
 * program-mode tests of `simple_server.ts`.
 *
 * @module
 */

import type { Application } from "../../types.ts";

const app: Application = (_environ, startResponse) => {
  startResponse("200 OK", [["Content-Type", "text/plain"]]);
  return [new TextEncoder().encode("fixture default")];
};

export default app;
