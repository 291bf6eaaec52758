/**
 * Hello, world: a gateway-interface application served by `makeServer` on
 * <http://127.0.0.1:8000/>. Ctrl-C stops it.
 *
 * ```sh
 * deno run -A examples/hello.ts          # port 8000
 * deno run -A examples/hello.ts 8080     # another port (0: any free one)
 * ```
 *
 * @module
 */

import { makeServer } from "../simple_server.ts";
import type { Application } from "../types.ts";

/** Greet the client with the path it asked for. */
export const app: Application = (environ, startResponse) => {
  // PATH_INFO holds the request's bytes, one char each (PEP 3333), so it
  // goes back to bytes as it is: a UTF-8 path stays UTF-8.
  const text = `Hello from ${environ.PATH_INFO}\n`;
  startResponse("200 OK", [["Content-Type", "text/plain; charset=utf-8"]]);
  return [Uint8Array.from(text, (c) => c.charCodeAt(0))];
};

if (import.meta.main) {
  const port = Number(Deno.args[0] ?? 8000);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error("Usage: deno run -A examples/hello.ts [port]");
    Deno.exit(2);
  }
  await using server = makeServer("127.0.0.1", port, app);
  console.log(
    `Serving on http://127.0.0.1:${server.serverPort}/ (Ctrl-C stops)`,
  );
  const stop = () => server.shutdown();
  Deno.addSignalListener("SIGINT", stop);
  try {
    await server.serveForever();
  } finally {
    Deno.removeSignalListener("SIGINT", stop);
  }
}
