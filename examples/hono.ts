#!/usr/bin/env -S deno run --allow-env --allow-read
/**
 * A Hono app as a gateway-interface application: `fromFetchHandler` turns
 * its `fetch` into an `Application`, which runs wherever this package runs
 * one.
 *
 * ```sh
 * deno run -A examples/hono.ts                # makeServer on port 8000
 * deno run -A examples/hono.ts 8080           # another port (0: any free one)
 * deno run -A fastcgi.ts examples/hono.ts     # the FastCGI gateway, port 9000
 * ```
 *
 * Started by a web server as a CGI program (it is executable, and the web
 * server sets `GATEWAY_INTERFACE`), it answers that one request through
 * `CGIHandler`. `docs/fetch.md` has the web server set-ups.
 *
 * Routes, below wherever it is mounted (`SCRIPT_NAME`: Hono sees the whole
 * path, so the routes are under `basePath`):
 *
 * - `GET /`: `Hello from Hono!`
 * - `GET /hello/:name`: `{ "hello": name }` as JSON.
 * - `POST /echo`: the JSON body back, with status 201.
 * - `GET /whoami`: the client's address, from the environ (`c.env`).
 *
 * @module
 */

// Inline, pinned by deno.lock: Hono is the example's dependency, not the
// package's, so it stays out of deno.json's imports.
// deno-lint-ignore no-import-prefix
import { Hono } from "npm:hono@4";
import { fromFetchHandler } from "@wsgi/wsgiref/fetch";
import type { Environ } from "@wsgi/wsgiref/types";

/** Where the app is mounted: a CGI program finds it in its environment,
 * and the gateway and `makeServer` serve it at the root. */
const base = Deno.env.get("SCRIPT_NAME") ?? "";

/** The Hono app; the environ of each request is its `c.env`. Not strict
 * about a final `/`, so that `/app` and `/app/` both reach `/`. */
export const hono: Hono<{ Bindings: Environ }> = new Hono<
  { Bindings: Environ }
>({ strict: false }).basePath(base);

hono.get("/", (c) => c.text("Hello from Hono!"));
hono.get("/hello/:name", (c) => c.json({ hello: c.req.param("name") }));
hono.post("/echo", async (c) => c.json(await c.req.json(), 201));
hono.get("/whoami", (c) => c.json({ address: c.env.REMOTE_ADDR ?? null }));

/** The same app as a gateway-interface application. */
export const app = fromFetchHandler(hono.fetch);

if (import.meta.main) {
  if (Deno.env.has("GATEWAY_INTERFACE")) {
    const { CGIHandler } = await import("@wsgi/wsgiref/handlers");
    await new CGIHandler().run(app);
  } else {
    const { makeServer } = await import("@wsgi/wsgiref/simple_server");
    const port = Number(Deno.args[0] ?? 8000);
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      console.error("Usage: deno run -A examples/hono.ts [port]");
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
}
