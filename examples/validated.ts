#!/usr/bin/env -S deno run --allow-net
/**
 * An application wrapped in `validator()`, served on
 * http://127.0.0.1:8000/. The validator checks both sides of every
 * request: the environ and streams the server provides, and the status,
 * headers and body the application returns. A broken rule throws an
 * `AssertionError` (the server logs it and answers 500); dubious use is
 * logged as a `WSGIWarning` line on the server's error stream.
 *
 * ```sh
 * deno run --allow-net examples/validated.ts
 * curl -i http://127.0.0.1:8000/hello
 * curl -I http://127.0.0.1:8000/hello       # HEAD: same headers, no body
 * curl -i --data 'some text' http://127.0.0.1:8000/echo
 * curl -i http://127.0.0.1:8000/broken      # a deliberate rule break
 * ```
 *
 * The application follows every rule the validator checks: it always sends
 * `Content-Type` (except for 204), a `Content-Length` equal to the bytes it
 * sends, no body for `HEAD`, and it reads exactly `CONTENT_LENGTH` bytes of
 * the request body.
 *
 * @module
 */

import type {
  Application,
  Environ,
  HeaderList,
  InputStream,
} from "@wsgi/wsgiref/types";
import { validator } from "@wsgi/wsgiref/validate";
import { makeServer } from "@wsgi/wsgiref/simple_server";

const encoder = new TextEncoder();

/** Answer `text` with its exact Content-Length, and no body for HEAD. */
function text(
  environ: Environ,
  startResponse: Parameters<Application>[1],
  status: string,
  body: string,
): Uint8Array[] {
  const bytes = encoder.encode(body);
  const headers: HeaderList = [
    ["Content-Type", "text/plain; charset=utf-8"],
    ["Content-Length", String(bytes.length)],
  ];
  startResponse(status, headers);
  return environ.REQUEST_METHOD === "HEAD" ? [] : [bytes];
}

/** The application, unwrapped: every response it gives is compliant. */
export const app: Application = (environ, startResponse) => {
  switch (environ.PATH_INFO) {
    case "/echo": {
      // Read exactly CONTENT_LENGTH bytes: reading on to the end of the
      // stream draws a WSGIWarning.
      const length = Number(environ.CONTENT_LENGTH || "0");
      const input = environ["wsgi.input"] as InputStream;
      const body = input.read(length);
      return text(
        environ,
        startResponse,
        "200 OK",
        `${body.length} bytes: ${new TextDecoder().decode(body)}\n`,
      );
    }
    case "/empty":
      startResponse("204 No Content", []);
      return [];
    case "/broken":
      // Content-Type is required: the validator throws an AssertionError
      // here and the server answers 500.
      startResponse("200 OK", []);
      return [encoder.encode("never sent\n")];
    default:
      return text(
        environ,
        startResponse,
        "200 OK",
        `Hello from ${environ.PATH_INFO}\n`,
      );
  }
};

/** The application as served: checked on every request. */
export const validatedApp: Application = validator(app);

if (import.meta.main) {
  const server = makeServer("127.0.0.1", 8000, validatedApp);
  console.log(
    `Serving on http://127.0.0.1:${server.serverPort}/ (Ctrl-C stops)`,
  );
  await server.serveForever();
}
