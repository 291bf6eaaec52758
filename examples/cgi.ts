#!/usr/bin/env -S deno run --allow-env --allow-read
/**
 * A CGI program: the web server starts it once per request, with the
 * request in environment variables and the body on stdin, and reads the
 * response from stdout. `CGIHandler` does the CGI side; the application is
 * an ordinary one.
 *
 * It imports `@wsgi/wsgiref/...`, which this repository's `deno.json`
 * resolves: copied alone into a CGI directory, it cannot load them.
 * `docs/cgi.md` makes it one self-contained file (`deno bundle`) and
 * shows the Apache, lighttpd and nginx + fcgiwrap set-ups. The web server
 * must give it a `PATH` that finds `deno` and a writable `DENO_DIR` for
 * Deno's cache.
 *
 * Routes, below wherever the server mounts it (`SCRIPT_NAME`):
 *
 * - `/hi`: `Hello world!`, as plain text.
 * - `/echo` (POST): reads the body through `wsgi.input` in 64 KiB pieces
 *   and answers its length and Adler-32 checksum, as JSON.
 * - `/download?bytes=N`: streams N bytes (at most 100 MiB) of the pattern
 *   `0, 1, ..., 250, 0, 1, ...` in 64 KiB chunks.
 * - `/ticks?n=N`: N lines (at most 10), 200 ms apart, each sent as soon as
 *   it is made, with the time it was made (ms since the epoch): a response
 *   that streams, unless the web server holds it.
 * - `/source`: this file, sent through `wsgi.file_wrapper`.
 * - `/error`: throws, to show the error page (and the stack in the server's
 *   error log).
 * - anything else: the request as the application sees it, as JSON.
 *
 * Try it without a web server, as a CGI host would run it:
 *
 * ```sh
 * REQUEST_METHOD=GET PATH_INFO=/hello QUERY_STRING=a=1 SERVER_NAME=localhost \
 *   SERVER_PORT=80 SERVER_PROTOCOL=HTTP/1.1 ./examples/cgi.ts
 * ```
 *
 * @module
 */

import { CGIHandler } from "@wsgi/wsgiref/handlers";
import type { Application, Environ, InputStream } from "@wsgi/wsgiref/types";
import { FileWrapper, requestUri } from "@wsgi/wsgiref/util";

const JSON_HEADERS: [string, string][] = [
  ["Content-Type", "application/json; charset=utf-8"],
];
const MAX_DOWNLOAD = 100 * 1024 * 1024;
const encoder = new TextEncoder();
const HELLO = encoder.encode("Hello world!\n");
/** 256 rounds of the 251-byte pattern: every chunk of a download is the
 * same. Made on first use: every CGI request starts a process, and most
 * never download. */
let pattern: Uint8Array | undefined;

function json(value: unknown): Uint8Array[] {
  return [encoder.encode(JSON.stringify(value, null, 2) + "\n")];
}

/** Read the body piece by piece: never all of it in memory at once. */
function echo(environ: Environ): Uint8Array[] {
  const input = environ["wsgi.input"] as InputStream;
  let length = 0;
  let a = 1;
  let b = 0;
  for (;;) {
    const piece = input.read(64 * 1024);
    if (piece.length === 0) break;
    length += piece.length;
    for (let i = 0; i < piece.length; i++) {
      a = (a + piece[i]) % 65521;
      b = (b + a) % 65521;
    }
  }
  const adler32 = ((b << 16) | a) >>> 0;
  return json({ length, adler32: adler32.toString(16).padStart(8, "0") });
}

function* download(size: number): Generator<Uint8Array> {
  pattern ??= Uint8Array.from({ length: 251 * 256 }, (_, i) => i % 251);
  for (let sent = 0; sent < size; sent += pattern.length) {
    yield size - sent >= pattern.length
      ? pattern
      : pattern.subarray(0, size - sent);
  }
}

/** `n` lines, one every 200 ms, each with the time it was made. */
async function* ticks(n: number): AsyncGenerator<Uint8Array> {
  for (let i = 1; i <= n; i++) {
    if (i > 1) await new Promise((resolve) => setTimeout(resolve, 200));
    yield encoder.encode(`tick ${i} ${Date.now()}\n`);
  }
}

/** The example application. */
export const app: Application = (environ, startResponse) => {
  switch (environ.PATH_INFO) {
    case "/hi":
      startResponse("200 OK", [["Content-Type", "text/plain"]]);
      return [HELLO];
    case "/echo":
      if (environ.REQUEST_METHOD !== "POST") {
        startResponse("405 Method Not Allowed", [["Allow", "POST"]]);
        return [];
      }
      startResponse("200 OK", JSON_HEADERS);
      return echo(environ);
    case "/download": {
      const query = new URLSearchParams(environ.QUERY_STRING ?? "");
      const size = Number(query.get("bytes") ?? "0");
      if (!Number.isSafeInteger(size) || size < 0 || size > MAX_DOWNLOAD) {
        startResponse("400 Bad Request", [["Content-Type", "text/plain"]]);
        return [encoder.encode(`bytes must be 0 to ${MAX_DOWNLOAD}\n`)];
      }
      startResponse("200 OK", [
        ["Content-Type", "application/octet-stream"],
        ["Content-Length", String(size)],
      ]);
      return download(size);
    }
    case "/ticks": {
      const n = Number(
        new URLSearchParams(environ.QUERY_STRING ?? "").get("n"),
      );
      startResponse("200 OK", [
        ["Content-Type", "text/plain"],
        // nginx holds small chunks back unless told not to.
        ["X-Accel-Buffering", "no"],
      ]);
      return ticks(Number.isInteger(n) && n > 0 && n <= 10 ? n : 3);
    }
    case "/source": {
      startResponse("200 OK", [["Content-Type", "text/plain; charset=utf-8"]]);
      const Wrapper = environ["wsgi.file_wrapper"] ?? FileWrapper;
      return new Wrapper(Deno.openSync(new URL(import.meta.url)));
    }
    case "/error":
      throw new Error("The /error route always fails");
    default:
      startResponse("200 OK", JSON_HEADERS);
      // Strings in an environ are latin-1: one char per byte of the request.
      return json({
        method: environ.REQUEST_METHOD,
        scriptName: environ.SCRIPT_NAME,
        pathInfo: environ.PATH_INFO ?? null,
        queryString: environ.QUERY_STRING,
        requestUri: requestUri(environ),
        serverProtocol: environ.SERVER_PROTOCOL,
        urlScheme: environ["wsgi.url_scheme"],
        runOnce: environ["wsgi.run_once"],
      });
  }
};

if (import.meta.main) {
  await new CGIHandler().run(app);
}
