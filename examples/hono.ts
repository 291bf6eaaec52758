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
 * `CGIHandler`. `docs/fetch.md` bundles it into one file for a CGI
 * directory, and serves it with the web server set-ups of `docs/deploy/`.
 *
 * Routes, below wherever the web server mounts it (`SCRIPT_NAME`, `/app`
 * say: Hono routes on the path below it):
 *
 * - `GET /`: `Hello from Hono!`
 * - `GET /hello/:name`: `{ "hello": name }` as JSON; `GET /hello`:
 *   `{ "hello": "world" }`.
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

/**
 * The path Hono routes on: the request's path less the mount point, as
 * many segments as `SCRIPT_NAME` has (`/app/hello/x` at `/app` is
 * `/hello/x`). So the app answers wherever the web server mounts it: a
 * CGI program at `/app`, the FastCGI gateway at `/app` or at the root,
 * `makeServer` at the root. Not strict about a final `/`, so that `/app`
 * and `/app/` both reach `/`. The path stays percent-encoded, as in the
 * URL (`c.req.param()` decodes it).
 */
function pathBelowMount(
  request: Request,
  options?: { env?: Environ },
): string {
  const mount = String(options?.env?.SCRIPT_NAME ?? "");
  const segments = new URL(request.url).pathname.split("/");
  const path = "/" + segments.slice(mount.split("/").length).join("/");
  return path.length > 1 && path.endsWith("/") ? path.slice(0, -1) : path;
}

/** The Hono app; the environ of each request is its `c.env`. */
export const hono: Hono<{ Bindings: Environ }> = new Hono<
  { Bindings: Environ }
>({ getPath: pathBelowMount });

hono.get("/", (c) => c.text("Hello from Hono!"));
hono.get(
  "/hello/:name?",
  (c) => c.json({ hello: c.req.param("name") ?? "world" }),
);
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
