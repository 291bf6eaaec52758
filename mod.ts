/**
 * `@wsgi/wsgiref`: Python's `wsgiref` (PEP 3333) for Deno, with no
 * dependencies. Write gateway-interface applications, serve them over
 * `Deno.serve`, run them as CGI programs or behind a web server's FastCGI,
 * and check them with a validator.
 *
 * | module | wsgiref | what it holds |
 * | --- | --- | --- |
 * | `types` | `wsgiref.types` | `Application`, `Environ`, `StartResponse`, ... |
 * | `util` | `wsgiref.util` | `shiftPathInfo`, `requestUri`, `FileWrapper`, ... |
 * | `headers` | `wsgiref.headers` | `Headers` |
 * | `handlers` | `wsgiref.handlers` | `SimpleHandler`, `CGIHandler`, ... |
 * | `simple_server` | `wsgiref.simple_server` | `makeServer`, `toFetchHandler`, ... |
 * | `validate` | `wsgiref.validate` | `validator`, `AssertionError` |
 * | `fastcgi` | (flup's FastCGI server) | `makeFastCGIServer`, `FastCGIHandler`, ... |
 * | `fetch` | (a2wsgi's bridge) | `fromFetchHandler`, `toFetchHandler` |
 *
 * @example Serving an application
 * ```ts ignore
 * import { makeServer, type Application } from "@wsgi/wsgiref";
 *
 * const app: Application = (_environ, startResponse) => {
 *   startResponse("200 OK", [["Content-Type", "text/plain"]]);
 *   return [new TextEncoder().encode("Hello world!")];
 * };
 * await using server = makeServer("127.0.0.1", 8000, app);
 * await server.serveForever();
 * ```
 *
 * @module
 */
export * from "./types.ts";
export * from "./util.ts";
export * from "./headers.ts";
export * from "./handlers.ts";
export * from "./simple_server.ts";
export * from "./validate.ts";
export * from "./fastcgi.ts";
export * from "./fetch.ts";
